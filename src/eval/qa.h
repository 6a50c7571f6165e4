// eval/qa.h: question answering over documents from a user JSONL file, one
// example per line:
//   {"question": "...", "documents": ["text", {"title": "...", "text": "..."}, ...],
//    "answers": ["...", ...]}
// ("answer": "..." is accepted for a single answer). The generator (tasks.h)
// puts each example's own documents among distractor documents taken from the
// other examples of the file, as RULER's qa task does, to fill the budget.
#pragma once

#include <string>
#include <vector>

namespace lq {

struct QaItem {
  std::string question;
  std::vector<std::string> documents;  // formatted: text, or "title\ntext"
  std::vector<std::string> answers;
};

// Throws lq::Error naming file:line and the field for malformed lines.
std::vector<QaItem> load_qa_jsonl(const std::string& path);

}  // namespace lq
