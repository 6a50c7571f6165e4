// eval/nocha.h: NoCha claim-verification data (Karpinska et al. 2024) as
// published: claims.json (a JSON array of claims with book_title, claim, type
// (true/false), index (the pair id shared by a true claim and its false
// twin)), books.jsonl (one {"book_title", "text"} per line) and prompt.txt
// (the prompt with the placeholders [book_text] and [claim]).
//
// Prompts contain the WHOLE book: a book that does not fit the context budget
// is skipped (and counted by the generator), never truncated.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lq {

struct NochaClaim {
  std::string book_title;
  std::string claim;
  bool type = false;        // the gold verdict
  int64_t pair_index = 0;   // NoCha's "index"
};

struct NochaData {
  std::vector<NochaClaim> claims;              // file order
  std::map<std::string, std::string> books;    // book_title -> text
  std::string prompt;                          // template with [book_text] and [claim]
};

// Loads dir/claims.json, dir/books.jsonl and dir/<prompt_file>. Every claim's
// book must be present. Throws lq::Error naming the file, line and field.
NochaData load_nocha_dir(const std::string& dir, const std::string& prompt_file = "prompt.txt");

// The template with [book_text] and [claim] replaced (each placeholder must
// occur exactly once; the substitution is one pass, so text inside the book
// or claim that looks like a placeholder is left alone).
std::string nocha_render_prompt(const std::string& tmpl, const std::string& book, const std::string& claim);

}  // namespace lq
