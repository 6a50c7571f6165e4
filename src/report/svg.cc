// report/svg.cc: inline SVG charts for the report (see svg.h).
#include "report/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace lq::report {

namespace {

constexpr const char* kFont = "font-family=\"Helvetica, Arial, sans-serif\"";

struct Rgb {
  double r, g, b;
};

Rgb parse_hex(const std::string& h) {
  auto v = [&](size_t i) { return double(std::stoi(h.substr(i, 2), nullptr, 16)); };
  return {v(1), v(3), v(5)};
}

std::string to_hex(Rgb c) {
  auto cl = [](double x) { return int(std::lround(std::clamp(x, 0.0, 255.0))); };
  return fmt::format("#{:02x}{:02x}{:02x}", cl(c.r), cl(c.g), cl(c.b));
}

// Piecewise-linear interpolation through equally spaced anchors, t in [0,1].
std::string ramp(const std::vector<const char*>& anchors, double t) {
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0);
  const double pos = t * double(anchors.size() - 1);
  const size_t i = std::min(size_t(pos), anchors.size() - 2);
  const double f = pos - double(i);
  const Rgb a = parse_hex(anchors[i]), b = parse_hex(anchors[i + 1]);
  return to_hex({a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)});
}

bool finite(const std::optional<double>& v) { return v && std::isfinite(*v); }

std::string num(double v) { return fmt::format("{:.1f}", v); }

// Nicely formatted tick value (drops a trailing ".0").
std::string tick_label(double v) {
  if (std::fabs(v - std::round(v)) < 1e-9) return fmt::format("{}", int64_t(std::llround(v)));
  return fmt::format("{:.2g}", v);
}

std::string open_svg(const std::string& id, const std::string& title, int w, int h) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" id=\"{}\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} "
      "{}\" role=\"img\" aria-label=\"{}\" {}>\n<title>{}</title>\n<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" "
      "fill=\"#ffffff\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\" "
      "fill=\"#222\">{}</text>\n",
      xml_escape(id), w, h, w, h, xml_escape(title), kFont, xml_escape(title), w, h, w / 2, xml_escape(title));
}

// Marker shape k centred at (x, y).
std::string marker(size_t k, double x, double y, const std::string& colour) {
  const double r = 4.5;
  switch (k % 5) {
    case 0:
      return fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{}\"/>", num(x), num(y), r, colour);
    case 1:
      return fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>", num(x - r), num(y - r),
                         2 * r, 2 * r, colour);
    case 2:
      return fmt::format("<path d=\"M{} {} L{} {} L{} {} Z\" fill=\"{}\"/>", num(x), num(y - r - 1), num(x + r + 1),
                         num(y + r), num(x - r - 1), num(y + r), colour);
    case 3:
      return fmt::format("<path d=\"M{} {} L{} {} L{} {} L{} {} Z\" fill=\"{}\"/>", num(x), num(y - r - 1),
                         num(x + r + 1), num(y), num(x), num(y + r + 1), num(x - r - 1), num(y), colour);
    default:
      return fmt::format("<path d=\"M{} {} L{} {} M{} {} L{} {}\" stroke=\"{}\" stroke-width=\"2.5\"/>", num(x - r),
                         num(y - r), num(x + r), num(y + r), num(x - r), num(y + r), num(x + r), num(y - r), colour);
  }
}

const char* dash(size_t k) {
  static const std::array<const char*, 5> d = {"", "7 4", "2 3", "9 3 2 3", "4 2"};
  return d[k % d.size()];
}

// Y axis with grid lines and tick labels, X axis line, axis titles.
std::string axes(double x0, double x1, double y0, double y1, double vmin, double vmax, int nt,
                 const std::string& x_label, const std::string& y_label, int total_h) {
  std::string o;
  nt = std::max(nt, 1);
  for (int i = 0; i <= nt; ++i) {
    const double v = vmin + (vmax - vmin) * double(i) / double(nt);
    const double y = y1 - (y1 - y0) * double(i) / double(nt);
    o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#dddddd\" stroke-width=\"1\"/>\n", num(x0),
                     num(y), num(x1), num(y));
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#333\">{}</text>\n",
                     num(x0 - 6), num(y + 4), tick_label(v));
  }
  o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#333\" stroke-width=\"1.2\"/>\n", num(x0),
                   num(y0), num(y1));
  o += fmt::format("<line x1=\"{0}\" y1=\"{2}\" x2=\"{1}\" y2=\"{2}\" stroke=\"#333\" stroke-width=\"1.2\"/>\n", num(x0),
                   num(x1), num(y1));
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#222\">{}</text>\n",
                   num((x0 + x1) / 2), total_h - 12, xml_escape(x_label));
  o += fmt::format(
      "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#222\" transform=\"rotate(-90 16 "
      "{0})\">{1}</text>\n",
      num((y0 + y1) / 2), xml_escape(y_label));
  return o;
}

double to_y(double v, double vmin, double vmax, double y0, double y1) {
  const double t = vmax > vmin ? (std::clamp(v, vmin, vmax) - vmin) / (vmax - vmin) : 0.0;
  return y1 - t * (y1 - y0);
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string o;
  o.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string series_colour(size_t i) {
  // Okabe & Ito (2008), ordered for contrast against white.
  static const std::array<const char*, 8> c = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                               "#E69F00", "#56B4E9", "#000000", "#F0E442"};
  return c[i % c.size()];
}

std::string viridis(double t) {
  return ramp({"#440154", "#472c7a", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"}, t);
}

std::string diverging(double t) {
  // ColorBrewer PuOr (11 classes), purple (-1) .. orange-brown (+1).
  t = std::isfinite(t) ? std::clamp(t, -1.0, 1.0) : 0.0;
  return ramp({"#2d004b", "#542788", "#8073ac", "#b2abd2", "#d8daeb", "#f7f7f7", "#fee0b6", "#fdb863", "#e08214",
               "#b35806", "#7f3b08"},
              (t + 1.0) / 2.0);
}

std::string text_colour_on(const std::string& bg) {
  const Rgb c = parse_hex(bg);
  const double lum = 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b;  // 0..255
  return lum < 140.0 ? "#ffffff" : "#000000";
}

std::string line_chart(const LineChartSpec& s) {
  const int W = s.width, H = s.height;
  const double x0 = 64, x1 = W - 190, y0 = 44, y1 = H - 56;
  std::string o = open_svg(s.id, s.title, W, H);
  o += axes(x0, x1, y0, y1, s.y_min, s.y_max, s.y_ticks, s.x_label, s.y_label, H);
  const size_t n = s.x_ticks.size();
  const double pad = 30;
  auto xpos = [&](size_t i) {
    return n <= 1 ? (x0 + x1) / 2 : x0 + pad + double(i) * (x1 - x0 - 2 * pad) / double(n - 1);
  };
  for (size_t i = 0; i < n; ++i) {
    o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#333\"/>\n", num(xpos(i)), num(y1),
                     num(y1 + 5));
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">{}</text>\n",
                     num(xpos(i)), num(y1 + 18), xml_escape(s.x_ticks[i]));
  }
  for (size_t k = 0; k < s.series.size(); ++k) {
    const auto& se = s.series[k];
    const std::string col = series_colour(k);
    std::string d;
    bool pen = false;
    for (size_t i = 0; i < n && i < se.y.size(); ++i) {
      if (!finite(se.y[i])) {
        pen = false;
        continue;
      }
      d += fmt::format("{}{} {} ", pen ? "L" : "M", num(xpos(i)), num(to_y(*se.y[i], s.y_min, s.y_max, y0, y1)));
      pen = true;
    }
    o += fmt::format("<g class=\"series\" data-name=\"{}\">", xml_escape(se.name));
    if (!d.empty()) {
      o += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2.2\" stroke-dasharray=\"{}\"/>", d,
                       col, dash(k));
    }
    for (size_t i = 0; i < n && i < se.y.size(); ++i) {
      if (!finite(se.y[i])) continue;
      o += marker(k, xpos(i), to_y(*se.y[i], s.y_min, s.y_max, y0, y1), col);
    }
    o += "</g>\n";
    // Legend entry.
    const double ly = y0 + 8 + 20.0 * double(k);
    o += fmt::format(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2.2\" stroke-dasharray=\"{}\"/>",
        num(x1 + 18), num(ly), num(x1 + 48), num(ly), col, dash(k));
    o += marker(k, x1 + 33, ly, col);
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#222\">{}</text>\n", num(x1 + 56), num(ly + 4),
                     xml_escape(se.name));
  }
  o += "</svg>\n";
  return o;
}

std::string heatmap(const HeatmapSpec& s) {
  size_t ylen = 0;
  for (const auto& t : s.y_ticks) ylen = std::max(ylen, t.size());
  const double ml = 40 + 7.0 * double(ylen) + 10;
  const double mt = 44;
  const size_t nr = s.y_ticks.size(), nc = s.x_ticks.size();
  // Wide enough for the title (15 px bold, ~8.5 px/char) and the x label (12 px, ~6.6 px/char).
  const double title_w = 8.5 * double(s.title.size()) + 40, xlabel_w = 6.6 * double(s.x_label.size()) + 40;
  const int W = int(std::max({ml + double(nc * s.cell_w) + 130, title_w, xlabel_w}));
  const int H = int(mt + double(nr * s.cell_h) + 62);
  std::string o = open_svg(s.id, s.title, W, H);
  const double lo = s.diverging ? -s.v_max : s.v_min, hi = s.v_max;
  auto colour = [&](double v) {
    if (s.diverging) return diverging(hi > 0 ? v / hi : 0.0);
    return viridis(hi > lo ? (v - lo) / (hi - lo) : 0.0);
  };
  for (size_t r = 0; r < nr; ++r) {
    const double y = mt + double(r * s.cell_h);
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#333\">{}</text>\n",
                     num(ml - 6), num(y + s.cell_h / 2.0 + 4), xml_escape(s.y_ticks[r]));
    for (size_t c = 0; c < nc; ++c) {
      const double x = ml + double(c * s.cell_w);
      const std::optional<double> v = r < s.values.size() && c < s.values[r].size() ? s.values[r][c] : std::nullopt;
      if (finite(v)) {
        const std::string bg = colour(*v);
        o += fmt::format(
            "<rect class=\"cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#ffffff\"/>"
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"{}\">{:.{}f}</text>\n",
            num(x), num(y), s.cell_w, s.cell_h, bg, num(x + s.cell_w / 2.0), num(y + s.cell_h / 2.0 + 4),
            text_colour_on(bg), *v, s.decimals);
      } else {
        o += fmt::format(
            "<rect class=\"cell missing\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#e0e0e0\" "
            "stroke=\"#ffffff\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" "
            "fill=\"#666\">n/a</text>\n",
            num(x), num(y), s.cell_w, s.cell_h, num(x + s.cell_w / 2.0), num(y + s.cell_h / 2.0 + 4));
      }
    }
  }
  const double yb = mt + double(nr * s.cell_h);
  for (size_t c = 0; c < nc; ++c) {
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">{}</text>\n",
                     num(ml + double(c * s.cell_w) + s.cell_w / 2.0), num(yb + 16), xml_escape(s.x_ticks[c]));
  }
  const double half = 3.3 * double(s.x_label.size());
  const double xc = std::clamp(ml + double(nc * s.cell_w) / 2, half + 10, std::max(half + 10, double(W) - half - 10));
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#222\">{}</text>\n",
                   num(xc), num(yb + 40), xml_escape(s.x_label));
  o += fmt::format(
      "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#222\" transform=\"rotate(-90 16 "
      "{0})\">{1}</text>\n",
      num(mt + double(nr * s.cell_h) / 2), xml_escape(s.y_label));
  // Colour bar: 24 stacked steps, top = hi.
  const double bx = ml + double(nc * s.cell_w) + 24, bh = std::max(80.0, double(nr * s.cell_h)), steps = 24;
  o += "<g class=\"colourbar\">";
  for (int i = 0; i < int(steps); ++i) {
    const double v = hi - (hi - lo) * (double(i) + 0.5) / steps;
    o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"{}\" fill=\"{}\"/>", num(bx),
                     num(mt + bh * double(i) / steps), num(bh / steps + 0.5), colour(v));
  }
  for (int i = 0; i <= 2; ++i) {
    const double v = hi - (hi - lo) * double(i) / 2.0;
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#333\">{}</text>", num(bx + 18),
                     num(mt + bh * double(i) / 2.0 + 4), tick_label(v));
  }
  o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#333\">{}</text>", num(bx - 4), num(mt - 8),
                   xml_escape(s.legend_label));
  o += "</g>\n</svg>\n";
  return o;
}

std::string grouped_bars(const BarChartSpec& s) {
  const int W = s.width, H = s.height;
  const double x0 = 64, x1 = W - 190, y0 = 44, y1 = H - 56;
  std::string o = open_svg(s.id, s.title, W, H);
  o += axes(x0, x1, y0, y1, s.y_min, s.y_max, s.y_ticks, s.x_label, s.y_label, H);
  const size_t ng = s.groups.size(), ns = std::max<size_t>(s.series.size(), 1);
  const double gw = ng ? (x1 - x0) / double(ng) : 0.0, bw = gw * 0.8 / double(ns);
  const bool labels = ng * ns <= 24;
  for (size_t g = 0; g < ng; ++g) {
    const double gx = x0 + gw * double(g);
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#333\">{}</text>\n",
                     num(gx + gw / 2), num(y1 + 18), xml_escape(s.groups[g]));
    for (size_t k = 0; k < s.series.size(); ++k) {
      const auto& se = s.series[k];
      if (g >= se.y.size() || !finite(se.y[g])) continue;
      const double v = *se.y[g];
      const double yv = to_y(v, s.y_min, s.y_max, y0, y1), yz = to_y(std::max(0.0, s.y_min), s.y_min, s.y_max, y0, y1);
      const double x = gx + gw * 0.1 + bw * double(k);
      o += fmt::format(
          "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}: {}</title></rect>",
          num(x), num(std::min(yv, yz)), num(bw * 0.92), num(std::max(std::fabs(yz - yv), 0.5)), series_colour(k),
          xml_escape(se.name + " / " + s.groups[g]), num(v));
      if (labels) {
        o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"9\" fill=\"#333\">{}</text>",
                         num(x + bw * 0.46), num(std::min(yv, yz) - 3), num(v));
      }
      o += "\n";
    }
  }
  for (size_t k = 0; k < s.series.size(); ++k) {
    const double ly = y0 + 8 + 20.0 * double(k);
    o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{}\"/>", num(x1 + 18), num(ly - 7),
                     series_colour(k));
    o += fmt::format("<text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"#222\">{}</text>\n", num(x1 + 38), num(ly + 4),
                     xml_escape(s.series[k].name));
  }
  o += "</svg>\n";
  return o;
}

}  // namespace lq::report
