#include "quant/calib.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/rng.h"
#include "io/tokenizer.h"

namespace lq::quant {

const std::vector<std::string>& builtin_calibration_text() {
  // Original text written for longquant (no third-party content).
  static const std::vector<std::string> kText = {
      "The ferry left the harbour an hour late, and by the time it cleared the breakwater the fog had "
      "already swallowed the lighthouse. Marta stood at the rail with her collar up, counting the buoys "
      "as they slid past: seven, eight, nine. Her brother had promised to meet her at the other side, "
      "but he had promised many things over the years, and she had learned to carry her own bags. When "
      "the engine changed its note she knew they were halfway across, and she went inside to buy a cup "
      "of tea that tasted mostly of the paper it came in.",
      "To rotate the logs without losing data, the service first renames the active file, then sends "
      "itself a signal to reopen its output. Any line written between the two steps still lands in the "
      "old file, which is why the compressor waits thirty seconds before it starts. If the disk fills "
      "up anyway, the writer drops debug messages first, warnings second, and errors never; a counter "
      "records how many lines were discarded so that an operator can tell a quiet night from a broken "
      "pipeline.",
      "\"Did you lock the back door?\" \"I think so.\" \"You think so, or you did?\" \"I remember turning "
      "the key. I don't remember whether it was this morning or yesterday.\" \"Then go and look.\" "
      "\"It's raining.\" \"It was raining yesterday too, and the cat still got out.\" He sighed, put on "
      "the boots that were two sizes too large, and went. When he came back he was soaked to the knees "
      "and holding the cat, who did not look sorry at all.",
      "Am Montagmorgen war der Bahnhof voller Menschen, die alle denselben Zug erreichen wollten. Die "
      "Anzeigetafel meldete zwanzig Minuten Verspätung, dann vierzig, dann gar nichts mehr. Ein älterer "
      "Herr begann, den Umstehenden die Geschichte der Strecke zu erzählen, von der Eröffnung im "
      "neunzehnten Jahrhundert bis zur Elektrifizierung, und erstaunlich viele hörten ihm zu. Als der "
      "Zug endlich einfuhr, applaudierte jemand, und niemand wusste genau, ob dem Zug oder dem Erzähler.",
      "La bibliothèque municipale ouvre ses portes à neuf heures, mais les habitués arrivent bien avant. "
      "Il y a l'étudiant qui prépare son concours depuis trois ans, la retraitée qui lit tous les "
      "journaux dans l'ordre alphabétique, et l'homme qui ne lit rien du tout mais qui aime le silence. "
      "La bibliothécaire les connaît tous par leur prénom. Elle dit souvent que son travail consiste "
      "moins à ranger des livres qu'à garder un endroit où l'on peut être seul ensemble.",
      "El mercado abre antes del amanecer. Los camiones llegan cargados de naranjas, tomates y pescado "
      "todavía frío, y los vendedores discuten los precios con una energía que no parece posible a esa "
      "hora. A las siete ya huele a pan y a café. Mi abuela compraba siempre en el mismo puesto, aunque "
      "el de al lado fuera más barato, porque decía que la confianza también se paga, y que al final "
      "sale más cara la fruta que te engaña.",
      "Quando chegámos à aldeia, a festa já tinha começado. Havia uma banda a tocar na praça, crianças "
      "a correr entre as mesas e um cheiro forte a sardinha assada. O meu tio apresentou-me a toda a "
      "gente, embora eu não me lembrasse de ninguém, e todos diziam que eu estava muito crescido. "
      "Dançámos até tarde, e no regresso a estrada parecia mais curta do que à ida.",
      "Il vecchio orologio della torre si era fermato alle tre e un quarto di un giorno che nessuno "
      "ricordava più. Per anni il paese aveva vissuto senza sapere l'ora esatta, e nessuno sembrava "
      "soffrirne troppo. Poi arrivò un giovane orologiaio dalla città, salì sulla torre con una borsa "
      "di attrezzi e, dopo tre settimane, le campane suonarono di nuovo. Alcuni dissero che era un "
      "miracolo; altri, che era soltanto una molla nuova.",
      "Zima tego roku przyszła wcześnie. Już w październiku jezioro pokryło się cienkim lodem, a "
      "rybacy wyciągnęli łodzie na brzeg dwa tygodnie przed terminem. Dzieci codziennie sprawdzały, czy "
      "lód jest już dość gruby, żeby można było na nim jeździć, i codziennie dostawały za to burę od "
      "rodziców. W końcu ktoś przyniósł miarkę i wyznaczył bezpieczną trasę wzdłuż brzegu.",
      "Поезд шёл всю ночь через степь, и в окне не было видно ничего, кроме редких огней далёких "
      "посёлков. Соседка по купе рассказывала о своей дочери, которая уехала учиться в другой город и "
      "теперь звонит только по воскресеньям. Под утро поезд остановился на маленькой станции, где "
      "продавали горячие пирожки, и весь вагон вышел на перрон, несмотря на холод.",
      "春天来的时候，山脚下的村子总是最先知道。河水开始变得浑浊，燕子回到屋檐下，老人们把冬天的被子"
      "拿出来晒。孩子们放学后不再直接回家，而是沿着河边慢慢走，寻找第一朵开放的野花。村里的小学只有"
      "两个老师，一个教语文，一个教数学，他们都说这里的孩子虽然调皮，但是很有礼貌。",
      "駅前の小さな本屋は、もう四十年以上同じ場所で営業している。店主は毎朝七時に店を開け、新聞を"
      "並べてから自分のためにお茶をいれる。常連客の好みはすべて覚えていて、新しい本が入ると黙って"
      "取り置きしておく。最近は電子書籍が増えたが、この店には今でも学生や近所の人が集まってくる。",
      "우리 동네에는 오래된 빵집이 하나 있다. 아침마다 갓 구운 빵 냄새가 골목 전체에 퍼지고, "
      "출근하는 사람들은 잠시 걸음을 멈춘다. 주인 할머니는 손님이 많든 적든 항상 같은 속도로 "
      "빵을 포장하신다. 가끔 남은 빵을 아이들에게 나눠 주시는데, 그래서인지 동네 아이들은 모두 "
      "할머니를 친할머니처럼 따른다.",
      "गाँव के किनारे एक पुराना बरगद का पेड़ है, जिसके नीचे शाम को लोग इकट्ठा होते हैं। बुज़ुर्ग "
      "पुरानी कहानियाँ सुनाते हैं, बच्चे खेलते हैं और कोई न कोई चाय बना लाता है। बारिश के मौसम में "
      "यही पेड़ सबको छाया और आश्रय देता है। लोग कहते हैं कि यह पेड़ गाँव से भी पुराना है।",
      "في الصباح الباكر تمتلئ الشوارع بأصوات الباعة وروائح الخبز الطازج. يمر الأطفال في طريقهم إلى "
      "المدرسة وهم يحملون حقائبهم الثقيلة، ويتوقف بعضهم لشراء قطعة من الحلوى. وفي المقهى الصغير عند "
      "الزاوية يجلس الرجال أنفسهم كل يوم، يقرؤون الصحف ويتحدثون عن الطقس والأسعار.",
      "def moving_average(values, window):\n    \"\"\"Return the running mean of `values` over `window` "
      "items.\"\"\"\n    if window <= 0:\n        raise ValueError(f\"window must be positive, got {window}\")\n"
      "    total = 0.0\n    out = []\n    for i, v in enumerate(values):\n        total += v\n"
      "        if i >= window:\n            total -= values[i - window]\n"
      "        out.append(total / min(i + 1, window))\n    return out\n",
      "Quarterly summary: revenue 4,812,300 (up 6.4% year on year); operating costs 3,950,120; net "
      "margin 17.9%. Headcount rose from 212 to 231. Shipping delays in weeks 14-17 moved about "
      "310,000 of orders into the next quarter. Targets for Q3: reduce average delivery time from 5.2 "
      "to 4.0 days, raise the repeat-customer rate above 38%, and finish the warehouse migration by "
      "30 September.",
      "Shopping list for the weekend trip: 1. tent and pegs (check the pole bag); 2. two sleeping bags; "
      "3. stove, gas canister, matches; 4. pasta, rice, tinned tomatoes, coffee; 5. water filter; "
      "6. first-aid kit; 7. spare batteries for the torch; 8. map of the northern trail, since the "
      "phone signal disappears after the second bridge.",
  };
  return kText;
}

std::vector<std::string> read_calibration_file(const std::string& path) {
  LQ_CHECK(file_exists(path), "calibration file '{}' not found", path);
  const std::string text = read_file(path);
  std::vector<std::string> docs;
  const size_t first = text.find_first_not_of(" \t\r\n");
  const bool jsonl = path.ends_with(".jsonl") || path.ends_with(".json") ||
                     (first != std::string::npos && text[first] == '{');
  std::istringstream in(text);
  std::string line;
  if (jsonl) {
    int64_t no = 0;
    while (std::getline(in, line)) {
      ++no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const std::exception& e) {
        fail("{}:{}: not valid JSON ({})", path, no, e.what());
      }
      LQ_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(),
               "{}:{}: expected an object with a string field \"text\"", path, no);
      std::string t = j["text"].get<std::string>();
      if (!t.empty()) docs.push_back(std::move(t));
    }
  } else {
    std::string cur;
    while (std::getline(in, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        if (!cur.empty()) docs.push_back(std::move(cur));
        cur.clear();
        continue;
      }
      if (!cur.empty()) cur += '\n';
      cur += line;
    }
    if (!cur.empty()) docs.push_back(std::move(cur));
  }
  LQ_CHECK(!docs.empty(), "calibration file '{}' holds no text", path);
  return docs;
}

CalibData make_calibration(const std::string& model_dir, int64_t vocab_size, int64_t bos_token_id,
                           const CalibOptions& o) {
  LQ_CHECK(o.samples >= 1, "--calib-samples must be >= 1, got {}", o.samples);
  LQ_CHECK(o.len >= 2, "--calib-len must be >= 2, got {}", o.len);
  LQ_CHECK(vocab_size > 0, "calibration needs a positive vocabulary size");
  CalibData d;
  Rng rng(o.seed ^ 0x63616c6962ull);
  const bool have_tok = file_exists(model_dir + "/tokenizer.json");
  if (!have_tok) {
    LQ_CHECK(o.file.empty(), "--calib {} needs a tokenizer, but {} has no tokenizer.json", o.file, model_dir);
    d.source = "random-tokens";
    d.description = fmt::format("{} samples x {} seeded random token ids (seed {}): {} has no tokenizer.json",
                                o.samples, o.len, o.seed, model_dir);
    for (int64_t s = 0; s < o.samples; ++s) {
      std::vector<int32_t> seq;
      seq.reserve(size_t(o.len));
      if (bos_token_id >= 0 && bos_token_id < vocab_size) seq.push_back(int32_t(bos_token_id));
      while (int64_t(seq.size()) < o.len) seq.push_back(int32_t(rng.below(uint64_t(vocab_size))));
      d.seqs.push_back(std::move(seq));
    }
    return d;
  }
  const Tokenizer tok = Tokenizer::load(model_dir);
  const std::vector<std::string> docs_text = o.file.empty() ? builtin_calibration_text() : read_calibration_file(o.file);
  d.source = o.file.empty() ? "builtin" : "file";
  std::vector<std::vector<int32_t>> docs;
  for (const auto& t : docs_text) {
    auto ids = tok.encode(t + "\n\n", false);
    for (int32_t id : ids)
      LQ_CHECK(id >= 0 && id < vocab_size, "calibration text encodes to id {} outside the model's vocabulary of {}",
               id, vocab_size);
    d.corpus_tokens += int64_t(ids.size());
    if (!ids.empty()) docs.push_back(std::move(ids));
  }
  LQ_CHECK(!docs.empty(), "calibration corpus{} tokenizes to nothing", o.file.empty() ? "" : " " + o.file);
  const std::vector<int32_t>& prefix = tok.special_prefix();
  LQ_CHECK(int64_t(prefix.size()) < o.len, "--calib-len {} is shorter than the tokenizer's prefix", o.len);
  for (int64_t s = 0; s < o.samples; ++s) {
    std::vector<int32_t> seq(prefix.begin(), prefix.end());
    // A fresh seeded document order per sample; start at a random token of the first one.
    std::vector<size_t> order(docs.size());
    std::iota(order.begin(), order.end(), 0);
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng.below(i))]);
    size_t di = 0;
    size_t off = size_t(rng.below(uint64_t(docs[order[0]].size())));
    while (int64_t(seq.size()) < o.len) {
      const auto& doc = docs[order[di % order.size()]];
      for (size_t i = off; i < doc.size() && int64_t(seq.size()) < o.len; ++i) seq.push_back(doc[i]);
      off = 0;
      if (++di % order.size() == 0)  // corpus exhausted: reshuffle for the next pass
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(rng.below(i))]);
    }
    d.seqs.push_back(std::move(seq));
  }
  d.description = fmt::format("{} samples x {} tokens from {} ({} documents, {} tokens; seed {})", o.samples, o.len,
                              o.file.empty() ? "the built-in multilingual paragraphs" : o.file, docs.size(),
                              d.corpus_tokens, o.seed);
  return d;
}

}  // namespace lq::quant
