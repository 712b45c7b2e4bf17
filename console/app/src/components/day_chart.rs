//! Runs per day by status, as an SVG stacked bar chart (geometry in [`crate::chart`]).

use antares_schemas::stats::DayStats;
use leptos::prelude::*;

use crate::chart::{self, STACK};
use crate::components::status;

const W: f64 = 700.0;
const H: f64 = 220.0;
/// Room for the axis labels.
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 22.0;

/// The chart of `days` (oldest first).
#[component]
pub fn DayChart(days: Vec<DayStats>) -> impl IntoView {
    let top = chart::nice_max(days.iter().map(|d| d.counts.total()).max().unwrap_or(0));
    let plot_h = H - BOTTOM - 8.0;
    let bars = chart::bars(&days, W - LEFT, plot_h, top);
    let every = if bars.len() > 10 { 2 } else { 1 };
    let grid = [top, top / 2]
        .into_iter()
        .filter(|v| *v > 0)
        .map(|v| {
            #[allow(clippy::cast_precision_loss)]
            let y = 8.0 + plot_h - plot_h * v as f64 / top as f64;
            view! {
                <line class="grid" x1=LEFT x2=W y1=y y2=y></line>
                <text class="axis" x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{v.to_string()}</text>
            }
        })
        .collect_view();
    let columns = bars
        .into_iter()
        .enumerate()
        .map(|(i, bar)| {
            let x = LEFT + bar.x;
            let label_x = x + bar.width / 2.0;
            let title = format!("{}: {} ended", bar.day, bar.total);
            let segments = bar
                .segments
                .into_iter()
                .map(|s| {
                    let name = status::name(&s.status);
                    let tip = format!("{name}: {}", s.count);
                    view! {
                        <rect
                            class=format!("seg status-{name}")
                            x=x
                            y=8.0 + s.y
                            width=bar.width
                            height=s.height
                        >
                            <title>{tip}</title>
                        </rect>
                    }
                })
                .collect_view();
            let label = (i % every == 0).then(|| {
                view! {
                    <text class="axis" x=label_x y=H - 6.0 text-anchor="middle">{bar.label.clone()}</text>
                }
            });
            view! {
                <g class="day" data-test="day-bar" data-day=bar.day.clone()>
                    <title>{title}</title>
                    {segments}
                    {label}
                </g>
            }
        })
        .collect_view();
    let legend = STACK
        .iter()
        .map(|s| {
            let name = status::name(s);
            view! {
                <span class="legend-item">
                    <span class=format!("swatch status-{name}")></span>
                    {name.clone()}
                </span>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" data-test="day-chart">
            <svg viewBox=format!("0 0 {W} {H}") preserveAspectRatio="xMidYMid meet" role="img">
                <title>"Runs per day by status"</title>
                {grid}
                <line class="axis-line" x1=LEFT x2=W y1=H - BOTTOM y2=H - BOTTOM></line>
                {columns}
            </svg>
            <figcaption class="legend">{legend}</figcaption>
        </figure>
    }
}
