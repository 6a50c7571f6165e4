// report/svg.h: the report's plots as self-contained inline SVG (no scripts,
// no external fonts or stylesheets), so report.html opens offline anywhere.
//
// Three chart kinds cover the report: a line chart (accuracy vs context
// length, KLD by position), a heatmap (drop by method x length, NIAH score by
// needle depth x length) and grouped bars (per-language scores). Every chart
// has a <title>, axis titles, tick labels and a legend (series legend or a
// colour bar). Colours are colour-blind safe: Okabe-Ito for series (plus a
// distinct marker shape and dash pattern per series, so lines are told apart
// without colour), viridis for sequential scales, ColorBrewer PuOr for
// diverging scales (orange = worse than the baseline, purple = better).
// Missing values are gaps in lines and grey "n/a" cells in heatmaps; no
// NaN/inf ever reaches the SVG text.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace lq::report {

// XML/HTML text escaping (& < > " ').
std::string xml_escape(const std::string& s);

// Okabe-Ito colour for series i (cycles after 8).
std::string series_colour(size_t i);
// Viridis at t in [0,1] (clamped), "#rrggbb".
std::string viridis(double t);
// PuOr at t in [-1,1] (clamped): -1 deep purple, 0 near white, +1 deep orange-brown.
std::string diverging(double t);
// Black or white, whichever reads better on `bg` ("#rrggbb").
std::string text_colour_on(const std::string& bg);

struct Series {
  std::string name;
  std::vector<std::optional<double>> y;  // one per x tick (line chart) or group (bars)
};

struct LineChartSpec {
  std::string id, title, x_label, y_label;
  std::vector<std::string> x_ticks;  // categorical, equally spaced
  std::vector<Series> series;
  double y_min = 0.0, y_max = 100.0;
  int y_ticks = 5;                   // intervals on the y axis
  int width = 720, height = 400;
};
std::string line_chart(const LineChartSpec& s);

struct HeatmapSpec {
  std::string id, title, x_label, y_label;
  std::vector<std::string> x_ticks, y_ticks;             // columns, rows
  std::vector<std::vector<std::optional<double>>> values;  // [row][col]
  bool diverging = false;  // false: viridis over [v_min, v_max]; true: PuOr over [-v_max, v_max]
  double v_min = 0.0, v_max = 100.0;
  int decimals = 1;        // value labels in the cells
  std::string legend_label;
  int cell_w = 70, cell_h = 34;
};
std::string heatmap(const HeatmapSpec& s);

struct BarChartSpec {
  std::string id, title, x_label, y_label;
  std::vector<std::string> groups;  // x categories
  std::vector<Series> series;       // one bar per series in each group
  double y_min = 0.0, y_max = 100.0;
  int y_ticks = 5;
  int width = 720, height = 400;
};
std::string grouped_bars(const BarChartSpec& s);

}  // namespace lq::report
