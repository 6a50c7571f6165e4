// eval/languages.cc: built-in prompt sets (en, de, pl, ru, zh, ja, written for
// this project) and the loader for OneRuler's published data directory.
#include "eval/languages.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "eval/scorers.h"

namespace lq {
namespace fs = std::filesystem;

std::string language_period(const std::string& code) {
  if (code == "zh" || code == "ja") return "。";
  if (code == "fa") return "۔";
  return ".";
}

bool language_without_spaces(const std::string& code) { return code == "zh" || code == "ja"; }

namespace {

LanguagePack make_pack(const std::string& code) {
  LanguagePack p;
  p.code = code;
  p.source = "built-in";
  p.no_spaces = language_without_spaces(code);
  p.period = language_period(code);
  return p;
}

LanguagePack pack_en() {
  LanguagePack p = make_pack("en");
  auto& n = p.niah;
  n.task = "Read the text below carefully and remember it. You will be asked about it afterwards.\n\n<text>\n{context}\n</text>\n\n";
  n.needle_words = "The secret word for \"{key}\" is: {value}";
  n.needle_numbers = "The secret number for \"{key}\" is: {value}";
  n.question_single_numbers = "<Question> Which secret numbers for \"{query1}\" appear in the text above?";
  n.question_single_words = "<Question> Which secret words for \"{query1}\" appear in the text above?";
  n.question_multi_numbers = "<Question> Which secret numbers for \"{query1}\" and \"{query2}\" appear in the text above?";
  n.question_multi_words = "<Question> Which secret words for \"{query1}\" and \"{query2}\" appear in the text above?";
  n.please_list = "List every one of them.";
  n.if_no_numbers = "If there is no such number, answer \"none\".</Question>\n\n\n";
  n.if_no_words = "If there is no such word, answer \"none\".</Question>\n\n\n";
  n.answer_prefix = "Give your answer in this format:\n";
  n.answer_words = "<Answer> the words </Answer>";
  n.answer_numbers = "<Answer> the numbers </Answer>";
  n.none = "none";
  p.cwe_template = "Here is a numbered list of words. Some words occur more often than the others; remember the most frequent ones.\n\n<List> {context} </List>\n\n<Question> Which 10 words occur most often in the list above? </Question>\n\nGive your answer in this format:\n<Answer> the words </Answer>";
  p.nouns = {"apple", "river", "window", "candle", "garden", "mirror", "pencil", "bridge", "cloud", "forest",
             "ladder", "needle", "rabbit", "saddle", "teapot", "violin", "wallet", "anchor", "basket", "castle",
             "dragon", "feather", "harbor", "island"};
  p.noise_sentences = {"The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                       "There and back again."};
  return p;
}

LanguagePack pack_de() {
  LanguagePack p = make_pack("de");
  auto& n = p.niah;
  n.task = "Lies den folgenden Text aufmerksam und merke ihn dir. Danach bekommst du Fragen dazu.\n\n<Text>\n{context}\n</Text>\n\n";
  n.needle_words = "Das geheime Wort für „{key}“ lautet: {value}";
  n.needle_numbers = "Die geheime Zahl für „{key}“ lautet: {value}";
  n.question_single_numbers = "<Frage> Welche geheimen Zahlen für „{query1}“ kommen im obigen Text vor?";
  n.question_single_words = "<Frage> Welche geheimen Wörter für „{query1}“ kommen im obigen Text vor?";
  n.question_multi_numbers = "<Frage> Welche geheimen Zahlen für „{query1}“ und „{query2}“ kommen im obigen Text vor?";
  n.question_multi_words = "<Frage> Welche geheimen Wörter für „{query1}“ und „{query2}“ kommen im obigen Text vor?";
  n.please_list = "Nenne alle.";
  n.if_no_numbers = "Gibt es keine solche Zahl, antworte mit „Keine vorhanden“.</Frage>\n\n\n";
  n.if_no_words = "Gibt es kein solches Wort, antworte mit „Keine vorhanden“.</Frage>\n\n\n";
  n.answer_prefix = "Antworte in diesem Format:\n";
  n.answer_words = "<Antwort> die Wörter </Antwort>";
  n.answer_numbers = "<Antwort> die Zahlen </Antwort>";
  n.none = "Keine vorhanden";
  p.cwe_template = "Hier ist eine nummerierte Liste von Wörtern. Manche Wörter kommen häufiger vor als andere; merke dir die häufigsten.\n\n<Liste> {context} </Liste>\n\n<Frage> Welche 10 Wörter kommen in der Liste oben am häufigsten vor? </Frage>\n\nAntworte in diesem Format:\n<Antwort> die Wörter </Antwort>";
  p.nouns = {"Apfel", "Fluss", "Fenster", "Kerze", "Garten", "Spiegel", "Bleistift", "Brücke", "Wolke", "Wald",
             "Leiter", "Nadel", "Hase", "Sattel", "Teekanne", "Geige", "Geldbörse", "Anker", "Korb", "Burg",
             "Drache", "Feder", "Hafen", "Insel"};
  p.noise_sentences = {"Das Gras ist grün.", "Der Himmel ist blau.", "Die Sonne ist gelb.", "Jetzt geht es los.",
                       "Hin und wieder zurück."};
  return p;
}

LanguagePack pack_pl() {
  LanguagePack p = make_pack("pl");
  auto& n = p.niah;
  n.task = "Przeczytaj uważnie poniższy tekst i zapamiętaj go. Później zadam ci pytania na jego temat.\n\n<tekst>\n{context}\n</tekst>\n\n";
  n.needle_words = "Tajne słowo dla „{key}” to: {value}";
  n.needle_numbers = "Tajna liczba dla „{key}” to: {value}";
  n.question_single_numbers = "<Pytanie> Jakie tajne liczby dla „{query1}” występują w powyższym tekście?";
  n.question_single_words = "<Pytanie> Jakie tajne słowa dla „{query1}” występują w powyższym tekście?";
  n.question_multi_numbers = "<Pytanie> Jakie tajne liczby dla „{query1}” i „{query2}” występują w powyższym tekście?";
  n.question_multi_words = "<Pytanie> Jakie tajne słowa dla „{query1}” i „{query2}” występują w powyższym tekście?";
  n.please_list = "Wymień wszystkie.";
  n.if_no_numbers = "Jeśli takiej liczby nie ma, odpowiedz „brak”.</Pytanie>\n\n\n";
  n.if_no_words = "Jeśli takiego słowa nie ma, odpowiedz „brak”.</Pytanie>\n\n\n";
  n.answer_prefix = "Odpowiedz w tym formacie:\n";
  n.answer_words = "<Odpowiedź> słowa </Odpowiedź>";
  n.answer_numbers = "<Odpowiedź> liczby </Odpowiedź>";
  n.none = "brak";
  p.cwe_template = "Oto ponumerowana lista słów. Niektóre słowa pojawiają się częściej niż inne; zapamiętaj najczęstsze.\n\n<Lista> {context} </Lista>\n\n<Pytanie> Które 10 słów pojawia się najczęściej na powyższej liście? </Pytanie>\n\nOdpowiedz w tym formacie:\n<Odpowiedź> słowa </Odpowiedź>";
  p.nouns = {"jabłko", "rzeka", "okno", "świeca", "ogród", "lustro", "ołówek", "most", "chmura", "las",
             "drabina", "igła", "królik", "siodło", "czajnik", "skrzypce", "portfel", "kotwica", "koszyk", "zamek",
             "smok", "pióro", "port", "wyspa"};
  p.noise_sentences = {"Trawa jest zielona.", "Niebo jest niebieskie.", "Słońce jest żółte.", "No to zaczynamy.",
                       "Tam i z powrotem."};
  return p;
}

LanguagePack pack_ru() {
  LanguagePack p = make_pack("ru");
  auto& n = p.niah;
  n.task = "Внимательно прочитай текст ниже и запомни его. Потом тебе зададут вопросы о нём.\n\n<текст>\n{context}\n</текст>\n\n";
  n.needle_words = "Секретное слово для «{key}»: {value}";
  n.needle_numbers = "Секретное число для «{key}»: {value}";
  n.question_single_numbers = "<Вопрос> Какие секретные числа для «{query1}» встречаются в тексте выше?";
  n.question_single_words = "<Вопрос> Какие секретные слова для «{query1}» встречаются в тексте выше?";
  n.question_multi_numbers = "<Вопрос> Какие секретные числа для «{query1}» и «{query2}» встречаются в тексте выше?";
  n.question_multi_words = "<Вопрос> Какие секретные слова для «{query1}» и «{query2}» встречаются в тексте выше?";
  n.please_list = "Перечисли их все.";
  n.if_no_numbers = "Если такого числа нет, ответь «нет».</Вопрос>\n\n\n";
  n.if_no_words = "Если такого слова нет, ответь «нет».</Вопрос>\n\n\n";
  n.answer_prefix = "Ответь в таком формате:\n";
  n.answer_words = "<Ответ> слова </Ответ>";
  n.answer_numbers = "<Ответ> числа </Ответ>";
  n.none = "нет";
  p.cwe_template = "Ниже приведён нумерованный список слов. Некоторые слова встречаются чаще других; запомни самые частые.\n\n<Список> {context} </Список>\n\n<Вопрос> Какие 10 слов чаще всего встречаются в списке выше? </Вопрос>\n\nОтветь в таком формате:\n<Ответ> слова </Ответ>";
  p.nouns = {"яблоко", "река", "окно", "свеча", "сад", "зеркало", "карандаш", "мост", "облако", "лес",
             "лестница", "игла", "кролик", "седло", "чайник", "скрипка", "кошелёк", "якорь", "корзина", "замок",
             "дракон", "перо", "гавань", "остров"};
  p.noise_sentences = {"Трава зелёная.", "Небо голубое.", "Солнце жёлтое.", "Ну, поехали.", "Туда и обратно."};
  return p;
}

LanguagePack pack_zh() {
  LanguagePack p = make_pack("zh");
  auto& n = p.niah;
  n.task = "请仔细阅读下面的文字并记住它。之后我会就这段文字提问。\n\n<文字>\n{context}\n</文字>\n\n";
  n.needle_words = "“{key}”的秘密词语是：{value}";
  n.needle_numbers = "“{key}”的秘密数字是：{value}";
  n.question_single_numbers = "<问题> 上文中出现了哪些与“{query1}”对应的秘密数字？";
  n.question_single_words = "<问题> 上文中出现了哪些与“{query1}”对应的秘密词语？";
  n.question_multi_numbers = "<问题> 上文中出现了哪些与“{query1}”和“{query2}”对应的秘密数字？";
  n.question_multi_words = "<问题> 上文中出现了哪些与“{query1}”和“{query2}”对应的秘密词语？";
  n.please_list = "请全部列出。";
  n.if_no_numbers = "如果没有这样的数字，请回答“无”。</问题>\n\n\n";
  n.if_no_words = "如果没有这样的词语，请回答“无”。</问题>\n\n\n";
  n.answer_prefix = "请按以下格式作答：\n";
  n.answer_words = "<答案> 词语 </答案>";
  n.answer_numbers = "<答案> 数字 </答案>";
  n.none = "无";
  p.cwe_template = "下面是一个带编号的词语列表。有些词语比其他词语出现得更频繁；请记住出现最多的词语。\n\n<列表> {context} </列表>\n\n<问题> 上面的列表中出现次数最多的10个词语是什么？ </问题>\n\n请按以下格式作答：\n<答案> 词语 </答案>";
  p.nouns = {"苹果", "河流", "窗户", "蜡烛", "花园", "镜子", "铅笔", "桥梁", "云朵", "森林", "梯子", "针",
             "兔子", "马鞍", "茶壶", "小提琴", "钱包", "船锚", "篮子", "城堡", "龙", "羽毛", "港口", "岛屿"};
  p.noise_sentences = {"草是绿的。", "天是蓝的。", "太阳是黄的。", "我们出发吧。", "去了又回来。"};
  return p;
}

LanguagePack pack_ja() {
  LanguagePack p = make_pack("ja");
  auto& n = p.niah;
  n.task = "次の文章をよく読んで覚えてください。あとで文章について質問します。\n\n<文章>\n{context}\n</文章>\n\n";
  n.needle_words = "「{key}」の秘密の言葉は{value}です";
  n.needle_numbers = "「{key}」の秘密の数字は{value}です";
  n.question_single_numbers = "<質問> 上の文章に出てくる「{query1}」の秘密の数字は何ですか？";
  n.question_single_words = "<質問> 上の文章に出てくる「{query1}」の秘密の言葉は何ですか？";
  n.question_multi_numbers = "<質問> 上の文章に出てくる「{query1}」と「{query2}」の秘密の数字は何ですか？";
  n.question_multi_words = "<質問> 上の文章に出てくる「{query1}」と「{query2}」の秘密の言葉は何ですか？";
  n.please_list = "すべて挙げてください。";
  n.if_no_numbers = "そのような数字がなければ「なし」と答えてください。</質問>\n\n\n";
  n.if_no_words = "そのような言葉がなければ「なし」と答えてください。</質問>\n\n\n";
  n.answer_prefix = "次の形式で答えてください：\n";
  n.answer_words = "<答え> 言葉 </答え>";
  n.answer_numbers = "<答え> 数字 </答え>";
  n.none = "なし";
  p.cwe_template = "以下は番号付きの単語リストです。ほかより多く出てくる単語があります。最も多く出てくる単語を覚えてください。\n\n<リスト> {context} </リスト>\n\n<質問> 上のリストで最も多く出てくる10個の単語は何ですか？ </質問>\n\n次の形式で答えてください：\n<答え> 単語 </答え>";
  p.nouns = {"りんご", "川", "窓", "ろうそく", "庭", "鏡", "鉛筆", "橋", "雲", "森", "はしご", "針",
             "うさぎ", "鞍", "急須", "バイオリン", "財布", "錨", "かご", "城", "竜", "羽", "港", "島"};
  p.noise_sentences = {"草は緑です。", "空は青いです。", "太陽は黄色です。", "さあ、行きましょう。", "行って帰ってきました。"};
  return p;
}

std::string read_text_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  LQ_CHECK(f.good(), "cannot open '{}'", p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string field(const nlohmann::json& j, const char* name, const fs::path& file) {
  LQ_CHECK(j.contains(name) && j[name].is_string(), "'{}': missing string field \"{}\"", file.string(), name);
  return j[name].get<std::string>();
}

// Python's strip() then dedupe preserving order (the noun list has duplicates
// in several languages; keys must be distinct so distractors never collide).
std::vector<std::string> clean_nouns(const std::vector<std::string>& raw) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& r : raw) {
    std::string s = uni::py_strip(r);
    if (s.empty() || !seen.insert(s).second) continue;
    out.push_back(s);
  }
  return out;
}

// OneRuler's dictionary folder names by language code.
const std::map<std::string, std::string>& dictionary_names() {
  static const std::map<std::string, std::string> m = {
      {"zh", "Chinese"},  {"cs", "Czech"},    {"da", "Danish"},    {"nl", "Dutch"},     {"en", "English"},
      {"fi", "Finnish"},  {"fr", "French"},   {"de", "German"},    {"hi", "Hindi"},     {"hu", "Hungarian"},
      {"it", "Italian"},  {"ja", "Japanese"}, {"ko", "Korean"},    {"no", "Norwegian"}, {"fa", "Persian"},
      {"pl", "Polish"},   {"pt", "Portuguese"}, {"ru", "Russian"}, {"sr", "Serbian"},   {"st", "Sesotho"},
      {"es", "Spanish"},  {"sw", "Swahili"},  {"sv", "Swedish"},   {"ta", "Tamil"},     {"uk", "Ukrainian"},
      {"vi", "Vietnamese"}};
  return m;
}

}  // namespace

LanguageSet LanguageSet::builtin() {
  LanguageSet s;
  for (auto p : {pack_en(), pack_de(), pack_pl(), pack_ru(), pack_zh(), pack_ja()}) s.packs_[p.code] = p;
  return s;
}

const LanguagePack& LanguageSet::get(const std::string& code) const {
  auto it = packs_.find(code);
  if (it == packs_.end()) {
    std::string known;
    for (const auto& [c, _] : packs_) known += (known.empty() ? "" : ", ") + c;
    fail("no prompt set for language '{}' (known: {}; pass --oneruler-data DIR for OneRuler's 26 languages)", code,
         known);
  }
  return it->second;
}

std::vector<std::string> LanguageSet::codes() const {
  std::vector<std::string> out;
  for (const auto& [c, _] : packs_) out.push_back(c);
  return out;
}

void LanguageSet::load_oneruler_dir(const std::string& dir) {
  fs::path root(dir);
  LQ_CHECK(fs::is_directory(root / "prompt"), "'{}' is not a OneRuler data directory (no prompt/ folder)", dir);
  // Noun table: header row of language codes; column 1 is the English definition.
  fs::path tsv = root / "vocab" / "100_noun_list_translated.tsv";
  std::map<std::string, std::vector<std::string>> nouns;
  {
    std::string text = read_text_file(tsv);
    std::vector<std::vector<std::string>> rows;
    std::stringstream ss(text);
    std::string line;
    while (std::getline(ss, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      std::vector<std::string> cols;
      size_t b = 0;
      while (true) {
        size_t e = line.find('\t', b);
        cols.push_back(line.substr(b, e == std::string::npos ? std::string::npos : e - b));
        if (e == std::string::npos) break;
        b = e + 1;
      }
      rows.push_back(std::move(cols));
    }
    LQ_CHECK(rows.size() >= 2, "'{}': expected a header and noun rows", tsv.string());
    const auto& header = rows[0];
    for (size_t r = 1; r < rows.size(); ++r)
      LQ_CHECK(rows[r].size() == header.size(), "'{}': row {} has {} columns, header has {}", tsv.string(), r + 1,
               rows[r].size(), header.size());
    for (size_t c = 0; c < header.size(); ++c) {
      std::string code = uni::py_strip(header[c]);
      if (code == "definition") continue;
      std::vector<std::string> col;
      for (size_t r = 1; r < rows.size(); ++r) col.push_back(rows[r][c]);
      nouns[code] = clean_nouns(col);
    }
  }
  std::vector<fs::path> langs;
  for (const auto& e : fs::directory_iterator(root / "prompt"))
    if (e.is_directory() && fs::exists(e.path() / "niah.txt")) langs.push_back(e.path());
  std::sort(langs.begin(), langs.end());
  LQ_CHECK(!langs.empty(), "'{}': no prompt/<lang>/niah.txt files", dir);
  for (const auto& ldir : langs) {
    std::string code = ldir.filename().string();
    LanguagePack p = make_pack(code);
    p.source = dir;
    if (has(code)) p.noise_sentences = packs_[code].noise_sentences;
    fs::path nf = ldir / "niah.txt";
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(nf));
    } catch (const nlohmann::json::exception& e) {
      fail("'{}': not valid JSON: {}", nf.string(), e.what());
    }
    auto& n = p.niah;
    n.task = field(j, "task", nf);
    n.needle_words = field(j, "needle_words", nf);
    n.needle_numbers = field(j, "needle_numbers", nf);
    n.question_single_numbers = field(j, "question_single_numbers", nf);
    n.question_single_words = field(j, "question_single_words", nf);
    n.question_multi_numbers = field(j, "question_multi_numbers", nf);
    n.question_multi_words = field(j, "question_multi_words", nf);
    n.please_list = field(j, "please_list", nf);
    n.if_no_numbers = field(j, "if_no_numbers", nf);
    n.if_no_words = field(j, "if_no_words", nf);
    n.answer_prefix = field(j, "answer_prefix", nf);
    n.answer_words = field(j, "answer_words", nf);
    n.answer_numbers = field(j, "answer_numbers", nf);
    n.none = field(j, "none", nf);
    if (fs::exists(ldir / "cwe.txt")) p.cwe_template = read_text_file(ldir / "cwe.txt");
    auto nit = nouns.find(code);
    LQ_CHECK(nit != nouns.end(), "'{}': no column for language '{}'", tsv.string(), code);
    p.nouns = nit->second;
    LQ_CHECK(p.nouns.size() >= 5, "'{}': language '{}' has only {} distinct nouns", tsv.string(), code,
             p.nouns.size());
    fs::path bdir = root / "books" / code;
    if (fs::is_directory(bdir)) {
      for (const auto& e : fs::directory_iterator(bdir))
        if (e.is_regular_file() && e.path().extension() == ".txt") p.book_files.push_back(e.path().string());
      std::sort(p.book_files.begin(), p.book_files.end());
    }
    auto dn = dictionary_names().find(code);
    if (dn != dictionary_names().end()) {
      fs::path csv = root / "vocab" / "dictionaries" / dn->second / (dn->second + ".csv");
      if (fs::exists(csv)) p.dictionary_file = csv.string();
    }
    packs_[code] = std::move(p);
  }
}

}  // namespace lq

// ---- word lists -------------------------------------------------------------

namespace lq {

namespace {

// pandas.read_csv's default NA strings: such a cell becomes NaN and OneRuler's
// dropna() removes the row.
bool pandas_na(const std::string& s) {
  static const std::set<std::string> na = {"",     "#N/A", "#N/A N/A", "#NA",  "-1.#IND", "-1.#QNAN", "-NaN",
                                           "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",     "NA",       "NULL",
                                           "NaN",  "None", "n/a",      "nan",  "null"};
  return na.count(s) > 0;
}

// RFC 4180 records: fields separated by ',', "..." quoting with "" for a quote,
// quoted fields may span lines; records end at LF or CRLF outside quotes.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& where) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  size_t i = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // UTF-8 byte-order mark
  auto end_row = [&] {
    row.push_back(std::move(field));
    field.clear();
    rows.push_back(std::move(row));
    row.clear();
    any = false;
  };
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field.push_back(c);
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
      if (c == '\r') ++i;
      if (any || !field.empty() || !row.empty()) end_row();
    } else {
      field.push_back(c);
      any = true;
    }
  }
  LQ_CHECK(!quoted, "'{}': unterminated quoted field at the end of the file", where);
  if (any || !field.empty() || !row.empty()) end_row();
  return rows;
}

}  // namespace

std::vector<std::string> load_oneruler_dictionary(const std::string& csv_path) {
  auto rows = parse_csv(read_text_file(csv_path), csv_path);
  LQ_CHECK(!rows.empty(), "'{}': empty dictionary file", csv_path);
  const auto& h = rows[0];
  int wcol = -1, pcol = -1;
  for (size_t c = 0; c < h.size(); ++c) {
    if (h[c] == "words") wcol = static_cast<int>(c);
    if (h[c] == "pos") pcol = static_cast<int>(c);
  }
  LQ_CHECK(wcol >= 0 && pcol >= 0, "'{}': the header must name the columns \"words\" and \"pos\"", csv_path);
  std::set<std::string> words;
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    if (static_cast<int>(row.size()) <= std::max(wcol, pcol)) continue;  // short row: NaN pos
    const std::string& w = row[static_cast<size_t>(wcol)];
    const std::string& pos = row[static_cast<size_t>(pcol)];
    if (pandas_na(w)) continue;
    if (pos != "noun" && pos != "adjective" && pos != "verb") continue;
    std::string clean = uni::sanitize(w);
    bool digit = false;
    for (char32_t c : uni::decode(clean)) digit |= uni::is_decimal_digit(c);
    if (!digit) words.insert(clean);
  }
  LQ_CHECK(!words.empty(), "'{}': no noun/adjective/verb rows", csv_path);
  return {words.begin(), words.end()};
}

const std::vector<std::string>& builtin_english_words() {
  // Written for this project: everyday nouns, adjectives and verbs.
  static const std::vector<std::string> words = [] {
    const char* text =
        "able absent accept account acid actor adapt admire adult advice afford agent agree aircraft alarm "
        "album alert alive allow almond amazing amuse ancient angle angry animal ankle annual answer apology "
        "appear apple apply apron arch argue arrive arrow artist ashore asleep attic audio aunt autumn avenue "
        "avoid awake award awful baby bacon badge bake balance ballet bamboo banana bandit banner barber bare "
        "barrel basin bath battery beach beam bean beard beast beauty become bedroom beef beetle begin behave "
        "believe bell belong belt bench berry bicycle bind biscuit bitter blade blank blanket blend blind "
        "blossom blouse blunt blush board boast bold bolt bone bonus borrow bottle bounce bowl brain branch "
        "brass bread breathe breeze brick bride bright brisk broad bronze brook broom brush bubble bucket "
        "budget build bullet bundle burden burn burst bury bushy butter buyer cabin cable cactus cage cake "
        "calendar calm camera camp canal candy cannon canoe canvas capable captain carbon cargo carpet carry "
        "carve castle casual catch cattle cause cave ceiling celery cellar cement cereal chain chair chalk "
        "change chapel charge charm chase cheap cheer cheese cherry chest chew chief child chimney choose "
        "chorus cider cinema circle citizen civil claim clap clay clean clerk clever cliff climb clinic cloak "
        "clock close cloth clumsy coach coast cobweb cocoa coconut coffee coin collar collect colony comb "
        "comfort comic common compass complain confuse cook copper coral cord cork corner cottage cotton "
        "cough count country couple courage cousin cover coward cozy crab cradle craft crane crash crawl "
        "crayon cream create credit creek crew cricket crisp crooked crowd crown cruel crumb crush crystal "
        "cuddle cupboard curious curl curtain cushion custom cycle daily dairy damage dance danger daring "
        "darken dawn debate decay deck decide decorate deep defend degree delay deliver demand dense dentist "
        "depart depend deposit depth describe deserve design desk detail develop diamond diary digest "
        "dinner direct dirty discover dish dismiss distant divide dizzy doctor donkey double dough dragon "
        "drain drama drawer dream dress drift drill drink drive drizzle drum dry duck dull dusk dwell eager "
        "eagle early earn earth easel echo edge editor educate elbow elder elect elegant elephant elevator "
        "embrace emerald empty enable enemy energy engine enjoy enormous enter entire envelope equal erase "
        "escape essay estate evening exact examine excite excuse exhale exist expand expect explore export "
        "fabric fade faint fair fairy faithful false family famous fancy fasten fatal faucet fault favor "
        "feast feather feeble fence fetch fever fiddle field fierce figure filter final finger finish "
        "flame flash flat flavor flee flint float flock flood floor flour flower fluffy flute foam focus "
        "foggy follow fond forest forget forgive fork fortune fossil fountain fragile frame freeze fresh "
        "friend fright frost frozen fruit funny furnace future gallery gamble garage garden garlic gather "
        "gauge gentle genuine giant giggle ginger giraffe glance glass glide glimmer globe gloomy glove glow "
        "goat golden gossip govern grab grace grain grape grasp grateful gravel greedy greet grief grill "
        "grin grocery groom ground grove growl guard guess guest guide guilty guitar habit hammer handle "
        "happy harbor harsh harvest hatch haunt hazard healthy heap heavy hedge height helmet herd hero "
        "hidden highway hiking hint history hobby hollow honest honey hook hopeful horizon horse hostile "
        "hover huddle humble humid hunger hurry husband hybrid icicle idea ignore illegal imagine immune "
        "impact import inch income index infant inform injure inkwell insect inspect invent invite iron "
        "island ivory jacket jaguar jelly jewel jigsaw jingle join journey judge juggle juice jumble jungle "
        "kennel kettle kidney kind kingdom kitchen kitten knee kneel knife knock label ladder ladle lake "
        "lamp language lantern large laugh launch laundry lawyer layer lazy leader leaf lean learn leather "
        "legend lemon lend lens lesson letter lettuce level liberty library lift light limit linen lion "
        "liquid listen little lively lizard load lobster locate locket lodge lonely loose lottery loud "
        "lovely loyal lucky lumber lunar lunch machine magnet maiden mammal manage mango mansion maple marble "
        "market marsh mask master meadow measure medal melody melt member mention merry message metal "
        "midnight mighty mild mineral minute mirror misty mitten mixture model modest moist monkey monster "
        "moral morning mosquito motion mountain mouse muddy muffin mumble muscle museum mushroom music "
        "mystery narrow native nature nearby neat needle nephew nervous nest network noble noisy normal "
        "notice novel number nurse nutmeg oasis obey object observe obtain ocean offer office olive onion "
        "opera orange orbit orchard order organ ostrich outdoor oven owner oyster paddle palace pale panel "
        "panic paper parade parcel parent parrot pasta pastry patch patient pause peach peanut pearl pebble "
        "pedal pencil people pepper perfect perform permit pigeon pillow pilot pioneer pirate pistol pitch "
        "planet plaster plastic plate pleasant plenty plump pocket poem polish polite pond popular porch "
        "portrait potato pottery powder praise prepare pretty prince prison private prize proud prune "
        "public puddle pumpkin punish puppet purple puzzle quarrel quarter queen quick quiet quilt rabbit "
        "racket radar radish rainbow raise rapid rattle raven razor ready reason rebel recall receive "
        "recipe record reduce reflect refuse region reject relax remain remote repair repeat reply rescue "
        "resist result retire reveal reward rhythm ribbon rich riddle rifle ripple river roast robust "
        "rocket roof rotten rough royal rubber rude ruin rumble runway rural rusty saddle safety sailor "
        "salad salmon sample sandal satisfy sauce sausage savage scarf scatter scheme school science "
        "scissors scrape scream season secret select senior sentence settle shadow shallow shape share "
        "shelter shiny shiver shoulder shovel shrink shy signal silent silver simple sketch skillet slender "
        "slippery smooth snail sneeze soap soldier solid spare sparkle spider spinach splash sponge spoon "
        "squeeze stable stairs steady steel stomach storm stove strange stream strict stripe sturdy submit "
        "sugar summer sunny supper surprise swallow sweater sweep swift symbol table tablet tailor talent "
        "tangle teacher temple tender tent thick thirsty thunder ticket tidy tiger timber tiny toast "
        "tomato tongue towel tower tractor travel treasure tremble tribe trophy trumpet tulip tunnel turtle "
        "twist umbrella uncle unfold unique unlock upset useful vacant valley vanish velvet verdict vessel "
        "village vinegar violet visit vivid volcano voyage wagon waist wander warm warn wealthy weary "
        "weather weave wedding whisper whistle wicked widow window winter wisdom wizard wobble wonder "
        "wooden worry wrinkle yawn yellow young zebra zigzag";
    std::set<std::string> s;
    std::string w;
    for (const char* p = text;; ++p) {
      if (*p == ' ' || *p == '\0') {
        if (!w.empty()) s.insert(w);
        w.clear();
        if (*p == '\0') break;
      } else {
        w.push_back(*p);
      }
    }
    return std::vector<std::string>(s.begin(), s.end());
  }();
  return words;
}

std::vector<std::string> words_from_text(const std::string& text) {
  std::set<std::string> out;
  std::u32string u = uni::decode(uni::sanitize(text));
  size_t i = 0;
  while (i < u.size()) {
    while (i < u.size() && uni::py_isspace(u[i])) ++i;
    size_t b = i;
    while (i < u.size() && !uni::py_isspace(u[i])) ++i;
    size_t e = i;
    while (b < e && !uni::is_word_char(u[b])) ++b;
    while (e > b && !uni::is_word_char(u[e - 1])) --e;
    if (b == e) continue;
    bool letters = true;
    for (size_t k = b; k < e; ++k) letters &= uni::is_word_char(u[k]) && !uni::is_decimal_digit(u[k]) && u[k] != U'_';
    if (letters) out.insert(uni::py_lower(uni::encode(u.substr(b, e - b))));
  }
  return {out.begin(), out.end()};
}

}  // namespace lq
