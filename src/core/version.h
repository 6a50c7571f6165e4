// core/version.h: build identification (version is LQ_VERSION, a compile definition).
#pragma once

namespace lq {
// Short git commit of the source tree at configure time ("unknown" outside git).
const char* git_hash();
}  // namespace lq
