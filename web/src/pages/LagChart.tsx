// The lag of one (sync, target) over the last hour, drawn by uPlot on a canvas. New points
// from `/metrics/summary` are appended to the chart's data (no redraw from scratch, no page
// reload). Colours come from the theme's CSS variables, so dark and light both read.
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { duration } from "../format";
import { appendPoints, type ChartData } from "./overview-logic";

const HEIGHT = 150;
const MIN_SPAN_SECONDS = 300;

function cssVar(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

export function LagChart({ id, label, points }: { id: string; label: string; points: { time: string; lag_seconds: number }[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = useRef<ChartData>([[], []]);
  const [count, setCount] = useState(0);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const fg = cssVar("--fg", "#1b1d21");
    const line = cssVar("--line", "#d9dce1");
    const axis = { stroke: fg, grid: { stroke: line }, ticks: { stroke: line } };
    const u = new uPlot(
      {
        width: Math.max(280, el.clientWidth),
        height: HEIGHT,
        legend: { show: false },
        cursor: { show: false },
        scales: {
          // At least 5 minutes wide: a chart of the first few samples reads as minutes, not ms.
          x: { time: true, range: (_u, min, max) => [Math.min(min, max - MIN_SPAN_SECONDS), max] },
          y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
        },
        axes: [axis, { ...axis, size: 60, values: (_u, ticks) => ticks.map((t) => duration(t)) }],
        series: [{}, { label: "lag", stroke: cssVar("--accent", "#1f5fbf"), width: 2, points: { show: false } }],
      },
      data.current,
      el,
    );
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(280, el.clientWidth), height: HEIGHT }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    if (appendPoints(data.current, points) > 0) {
      plot.current?.setData(data.current);
      setCount(data.current[0].length);
    }
  }, [points]);

  const last = data.current[1].length ? data.current[1][data.current[1].length - 1] : null;
  return (
    <figure class="lag-chart" data-testid={`lag-chart-${id}`} data-points={count}>
      <figcaption>
        {label}: lag over the last hour{last === null ? " (no sample yet: one every 5 s)" : `, now ${duration(last)}`}
      </figcaption>
      <div ref={box} role="img" aria-label={`${label}: lag over the last hour, ${count} points`} />
    </figure>
  );
}
