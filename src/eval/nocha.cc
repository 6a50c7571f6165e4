// eval/nocha.cc: loader and prompt rendering for NoCha's published sample.
#include "eval/nocha.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace lq {

namespace {
std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LQ_CHECK(f.good(), "cannot open '{}'", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

template <typename T>
T need(const nlohmann::json& j, const char* key, const std::string& where) {
  LQ_CHECK(j.is_object() && j.contains(key), "{}: missing field \"{}\"", where, key);
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: field \"{}\" has the wrong type: {}", where, key, e.what());
  }
}
}  // namespace

NochaData load_nocha_dir(const std::string& dir, const std::string& prompt_file) {
  NochaData d;
  const std::string cpath = dir + "/claims.json", bpath = dir + "/books.jsonl", ppath = dir + "/" + prompt_file;
  nlohmann::json cj;
  try {
    cj = nlohmann::json::parse(slurp(cpath));
  } catch (const nlohmann::json::exception& e) {
    fail("'{}': not valid JSON: {}", cpath, e.what());
  }
  LQ_CHECK(cj.is_array(), "'{}': expected a JSON array of claims", cpath);
  for (size_t i = 0; i < cj.size(); ++i) {
    const std::string where = cpath + " claim " + std::to_string(i);
    NochaClaim c;
    c.book_title = need<std::string>(cj[i], "book_title", where);
    c.claim = need<std::string>(cj[i], "claim", where);
    c.type = need<bool>(cj[i], "type", where);
    c.pair_index = need<int64_t>(cj[i], "index", where);
    d.claims.push_back(std::move(c));
  }
  {
    std::ifstream f(bpath, std::ios::binary);
    LQ_CHECK(f.good(), "cannot open '{}'", bpath);
    std::string line;
    int64_t lineno = 0;
    while (std::getline(f, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = bpath + ":" + std::to_string(lineno);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("{}: invalid JSON: {}", where, e.what());
      }
      auto title = need<std::string>(j, "book_title", where);
      LQ_CHECK(!d.books.count(title), "{}: book '{}' appears twice", where, title);
      d.books[title] = need<std::string>(j, "text", where);
    }
  }
  for (const auto& c : d.claims)
    LQ_CHECK(d.books.count(c.book_title), "'{}': claim about '{}' but '{}' has no such book", cpath, c.book_title,
             bpath);
  d.prompt = slurp(ppath);
  nocha_render_prompt(d.prompt, "", "");  // validates the placeholders
  return d;
}

std::string nocha_render_prompt(const std::string& tmpl, const std::string& book, const std::string& claim) {
  static const std::string kBook = "[book_text]", kClaim = "[claim]";
  auto once = [&](const std::string& ph) {
    size_t p = tmpl.find(ph);
    LQ_CHECK(p != std::string::npos && tmpl.find(ph, p + 1) == std::string::npos,
             "NoCha prompt template must contain {} exactly once", ph);
    return p;
  };
  size_t pb = once(kBook), pc = once(kClaim);
  std::string out;
  out.reserve(tmpl.size() + book.size() + claim.size());
  if (pb < pc) {
    out.append(tmpl, 0, pb);
    out += book;
    out.append(tmpl, pb + kBook.size(), pc - pb - kBook.size());
    out += claim;
    out.append(tmpl, pc + kClaim.size(), std::string::npos);
  } else {
    out.append(tmpl, 0, pc);
    out += claim;
    out.append(tmpl, pc + kClaim.size(), pb - pc - kClaim.size());
    out += book;
    out.append(tmpl, pb + kBook.size(), std::string::npos);
  }
  return out;
}

}  // namespace lq
