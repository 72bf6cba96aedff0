import { percentile } from './stats.js';

/**
 * Latency distributions as horizontal box plots on a log-scale axis: whiskers from min to p99, the box from p25
 * to p75, a bar at the median. One row per series; a self-contained SVG.
 */
export function latencyChart(series: Array<{ label: string; samples: number[] }>, title: string): string {
  const rows = series.filter((s) => s.samples.length > 0);
  const [left, right, top, rowHeight] = [300, 40, 50, 34];
  const width = 960;
  const plotWidth = width - left - right;
  const height = top + rows.length * rowHeight + 50;
  const all = rows.flatMap((s) => s.samples).filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...all)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const x = (ms: number) => left + ((Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotWidth;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" role="img" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<title>${xmlEscape(title)}</title>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${xmlEscape(title)}</text>`,
  ];
  for (let tick = lo; tick <= hi * 1.0001; tick *= 10) {
    const tx = x(tick).toFixed(1);
    parts.push(
      `<line x1="${tx}" x2="${tx}" y1="${top - 8}" y2="${height - 40}" stroke="#ddd"/>`,
      `<text x="${tx}" y="${height - 24}" text-anchor="middle">${tick >= 1 ? `${tick} ms` : `${tick * 1000} µs`}</text>`,
    );
  }
  rows.forEach(({ label, samples }, i) => {
    const sorted = [...samples].sort((a, b) => a - b);
    const [min, p25, p50, p75, p99] = [sorted[0], ...[25, 50, 75, 99].map((p) => percentile(sorted, p))];
    const cy = top + i * rowHeight + rowHeight / 2;
    const color = i % 2 === 0 ? '#2b6cb0' : '#c05621';
    parts.push(
      `<text x="${left - 10}" y="${cy + 4}" text-anchor="end">${xmlEscape(label)} (p50 ${p50.toPrecision(3)} ms)</text>`,
      `<line x1="${x(min).toFixed(1)}" x2="${x(p99).toFixed(1)}" y1="${cy}" y2="${cy}" stroke="${color}"/>`,
      `<rect x="${x(p25).toFixed(1)}" y="${cy - 9}" width="${Math.max(1, x(p75) - x(p25)).toFixed(1)}" height="18" fill="${color}" fill-opacity="0.25" stroke="${color}"/>`,
      `<line x1="${x(p50).toFixed(1)}" x2="${x(p50).toFixed(1)}" y1="${cy - 11}" y2="${cy + 11}" stroke="${color}" stroke-width="3"/>`,
      `<line x1="${x(p99).toFixed(1)}" x2="${x(p99).toFixed(1)}" y1="${cy - 6}" y2="${cy + 6}" stroke="${color}"/>`,
    );
  });
  parts.push(
    `<text x="${left}" y="${height - 6}" fill="#555">whiskers: min to p99 · box: p25 to p75 · bar: median · log scale</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One line of a scale chart: `points` are [x, y], x ascending. */
export interface ScaleSeries {
  readonly label: string;
  readonly points: ReadonlyArray<readonly [number, number]>;
}

/**
 * Cost against scale on log-log axes (a flat line is a cost that does not grow; a line at 45° grows in
 * proportion): one polyline with dots per series, a legend, decade grid lines. A self-contained SVG.
 */
export function scaleChart(series: readonly ScaleSeries[], title: string, xLabel: string, yLabel: string): string {
  const [left, right, top, bottom, width, height] = [80, 220, 50, 60, 900, 420];
  const points = series.flatMap((s) => s.points).filter(([x, y]) => x > 0 && y > 0);
  const decade = (v: number, up: boolean) => 10 ** (up ? Math.ceil(Math.log10(v)) : Math.floor(Math.log10(v)));
  const [xlo, xhi] = [decade(Math.min(...points.map((p) => p[0])), false), decade(Math.max(...points.map((p) => p[0])), true)];
  const [ylo, yhi] = [decade(Math.min(...points.map((p) => p[1])), false), decade(Math.max(...points.map((p) => p[1])), true)];
  const scale = (v: number, lo: number, hi: number) => (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1);
  const x = (v: number) => left + scale(v, xlo, xhi) * (width - left - right);
  const y = (v: number) => height - bottom - scale(v, ylo, yhi) * (height - top - bottom);
  const colors = ['#2b6cb0', '#c05621', '#2f855a', '#6b46c1', '#b7791f', '#c53030'];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" role="img" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<title>${xmlEscape(title)}</title>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${(left + width - right) / 2}" y="24" text-anchor="middle" font-size="15">${xmlEscape(title)}</text>`,
  ];
  for (let t = xlo; t <= xhi * 1.0001; t *= 10) {
    parts.push(
      `<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${top}" y2="${height - bottom}" stroke="#ddd"/>`,
      `<text x="${x(t).toFixed(1)}" y="${height - bottom + 18}" text-anchor="middle">${t}</text>`,
    );
  }
  for (let t = ylo; t <= yhi * 1.0001; t *= 10) {
    parts.push(
      `<line x1="${left}" x2="${width - right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#ddd"/>`,
      `<text x="${left - 8}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`,
    );
  }
  parts.push(
    `<text x="${(left + width - right) / 2}" y="${height - 18}" text-anchor="middle">${xmlEscape(xLabel)} (log)</text>`,
    `<text x="18" y="${(top + height - bottom) / 2}" text-anchor="middle" transform="rotate(-90 18 ${(top + height - bottom) / 2})">${xmlEscape(yLabel)} (log)</text>`,
  );
  series.forEach((s, i) => {
    const color = colors[i % colors.length];
    const shown = s.points.filter(([px, py]) => px > 0 && py > 0);
    parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${shown.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ')}"/>`,
      ...shown.map(([px, py]) => `<circle cx="${x(px).toFixed(1)}" cy="${y(py).toFixed(1)}" r="3.5" fill="${color}"/>`),
      `<line x1="${width - right + 16}" x2="${width - right + 40}" y1="${top + 10 + i * 20}" y2="${top + 10 + i * 20}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${width - right + 46}" y="${top + 14 + i * 20}">${xmlEscape(s.label)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}
