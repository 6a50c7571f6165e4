// eval/qa.cc: loader of the QA JSONL format (see qa.h).
#include "eval/qa.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/error.h"

namespace lq {

std::vector<QaItem> load_qa_jsonl(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  LQ_CHECK(f.good(), "cannot open '{}'", path);
  std::vector<QaItem> out;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", where, e.what());
    }
    LQ_CHECK(j.is_object(), "{}: not a JSON object", where);
    QaItem it;
    LQ_CHECK(j.contains("question") && j["question"].is_string(), "{}: missing string field \"question\"", where);
    it.question = j["question"].get<std::string>();
    LQ_CHECK(j.contains("documents") && j["documents"].is_array() && !j["documents"].empty(),
             "{}: missing non-empty array field \"documents\"", where);
    for (const auto& d : j["documents"]) {
      if (d.is_string()) {
        it.documents.push_back(d.get<std::string>());
      } else if (d.is_object() && d.contains("text") && d["text"].is_string()) {
        std::string t = d["text"].get<std::string>();
        if (d.contains("title") && d["title"].is_string() && !d["title"].get<std::string>().empty())
          t = d["title"].get<std::string>() + "\n" + t;
        it.documents.push_back(std::move(t));
      } else {
        fail("{}: each document must be a string or an object with a string \"text\"", where);
      }
    }
    if (j.contains("answers")) {
      LQ_CHECK(j["answers"].is_array() && !j["answers"].empty(), "{}: \"answers\" must be a non-empty array", where);
      for (const auto& a : j["answers"]) {
        LQ_CHECK(a.is_string(), "{}: \"answers\" must hold strings", where);
        it.answers.push_back(a.get<std::string>());
      }
    } else {
      LQ_CHECK(j.contains("answer") && j["answer"].is_string(), "{}: missing field \"answers\" (array of strings)",
               where);
      it.answers.push_back(j["answer"].get<std::string>());
    }
    out.push_back(std::move(it));
  }
  LQ_CHECK(!out.empty(), "'{}': no QA examples", path);
  return out;
}

}  // namespace lq
