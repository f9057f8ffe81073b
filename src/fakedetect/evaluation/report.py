"""One self-contained HTML report (images embedded as data URIs): opens from disk, no server, no internet."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

from fakedetect.atomic import write_text
from fakedetect.data.checks import open_image

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.3rem;margin-top:2rem}
.sub{color:#666}table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.figs{display:flex;flex-wrap:wrap;gap:1rem}.figs figure{margin:0}
.figs img{max-width:100%;max-height:430px;border:1px solid #eee}
.gallery{display:flex;flex-wrap:wrap;gap:.8rem}.card{width:150px;font-size:.8rem;word-break:break-all}
.card img{width:150px;height:150px;object-fit:contain;background:#f4f4f4}.bad{color:#b30000;font-weight:600}
pre{background:#f7f7f7;padding:.8rem;overflow:auto}.kpi{display:flex;gap:1rem;flex-wrap:wrap}
.kpi div{background:#f4f8fb;border:1px solid #dbe7f0;border-radius:6px;padding:.6rem 1rem;min-width:120px}
.kpi b{display:block;font-size:1.4rem}
.warn{background:#fff0f0;border:2px solid #b30000;padding:.8rem;font-weight:600;color:#b30000}
"""


def _img_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _thumb_uri(path: str, size: int = 150) -> str | None:
    try:
        with open_image(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:  # noqa: BLE001 - a thumbnail is decoration; never fail the report for it
        return None


def _fmt(v) -> str:
    if v is None:
        return "undefined"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def confident_mistakes(df: pd.DataFrame, n: int = 12) -> pd.DataFrame:
    """The wrong predictions the model was surest of (real scored most fake, fake scored most real)."""
    wrong = df[df["label"] != df["predicted"]].copy()
    wrong["confidence"] = (wrong["prob_fake"] - 0.5).abs()
    return wrong.sort_values("confidence", ascending=False).head(n)


def write_report(path: Path, run, m: dict, figs: dict[str, Path], df: pd.DataFrame, report_txt: str) -> Path:
    card = run.card
    t = m["threshold"]
    kpis = [("accuracy", m["accuracy"]), ("balanced accuracy", m["balanced_accuracy"]), ("ROC AUC", m["roc_auc"]),
            ("EER", m["eer"]), ("F1 (fake)", m["f1"]), ("ECE", m["ece"])]
    keys = ["accuracy", "balanced_accuracy", "precision", "recall", "f1", "specificity", "accuracy_real",
            "accuracy_fake", "roc_auc", "average_precision", "eer", "ece", "loss"]
    rows = "".join(f"<tr><td>{k}</td><td>{_fmt(m.get(k))}</td><td>{_fmt(m['at_0.5'].get(k))}</td></tr>"
                   for k in keys)
    cm = m["confusion_matrix"]
    model_rows = [
        ("backbone", card.backbone), ("weights", card.weights),
        ("image size", f"{card.image_size} px"), ("threshold", f"{t:.4f} ({card.threshold_rule})"),
        ("temperature", f"{m.get('temperature', 1.0):.4f}"), ("trained", card.created),
        ("training data", ", ".join(card.source_names()) or None),  # names, never the paths of this machine
        ("train images", card.data.get("train")), ("validation images", card.data.get("val")),
        ("validation split", card.data.get("val_source")),
    ]
    model_html = "".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:left'>{_fmt(v)}</td></tr>"
                         for k, v in model_rows)
    gallery, banner = _gallery(df), _overlap_banner(m)
    fig_order = ["confusion_matrix", "roc_curve", "pr_curve", "reliability", "score_histogram", "training_curves"]
    fig_html = "".join(f"<figure><img src='{_img_uri(figs[k])}' alt='{k}'><figcaption>{k.replace('_', ' ')}"
                       f"</figcaption></figure>" for k in fig_order if k in figs)
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>fakedetect evaluation: {html.escape(card.backbone)}</title><style>{CSS}</style></head><body>
<h1>fakedetect evaluation</h1>
<p class="sub">{html.escape(str(m['data']['root']))} (split {html.escape(m['data']['split'])}):
{m['n']} images scored ({m['n_real']} real, {m['n_fake']} fake), {m['skipped']} unreadable file(s) skipped.
Evaluated {html.escape(m['evaluated'])}. Positive class: fake.</p>
{banner}<div class="kpi">{''.join(f'<div>{html.escape(k)}<b>{_fmt(v)}</b></div>' for k, v in kpis)}</div>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>threshold {t:.4f} (the run's)</th><th>threshold 0.5</th></tr>{rows}</table>
<p>Confusion matrix at {t:.4f}: {cm['tn']} real kept real, {cm['fp']} real called fake, {cm['fn']} fake
called real, {cm['tp']} fake caught. ECE before calibration {_fmt(m.get('ece_uncalibrated'))}, after
{_fmt(m['ece'])}.</p>
<h2>Plots</h2><div class="figs">{fig_html}</div>
<h2>Most confident mistakes</h2><div class="gallery">{gallery}</div>
<h2>Model card</h2><table>{model_html}</table>
<h2>Classification report</h2><pre>{html.escape(report_txt)}</pre>
</body></html>
"""
    write_text(path, body)
    return path


def _gallery(df: pd.DataFrame) -> str:
    """The most confident mistakes as thumbnails."""
    cards = []
    for _, r in confident_mistakes(df).iterrows():
        uri = _thumb_uri(r["path"])
        img = f"<img src='{uri}' alt=''>" if uri else "<div class='bad'>(unreadable)</div>"
        truth = "real" if r["label"] == 0 else "fake"
        cards.append(f"<div class='card'>{img}<div>true <b>{truth}</b>, P(fake) "
                     f"<span class='bad'>{r['prob_fake']:.3f}</span></div>"
                     f"<div class='sub'>{html.escape(Path(r['path']).name)}</div></div>")
    return "".join(cards) or "<p>No mistakes at this threshold.</p>"


def _overlap_banner(m: dict) -> str:
    """A red warning when test images were seen in training or validation."""
    overlap = m.get("overlap_with_training") or {}
    if not overlap.get("n"):
        return ""
    clean = overlap.get("metrics_without_overlap")
    rest = (f"On the {clean['n']} images it never saw: accuracy {_fmt(clean['accuracy'])}, ROC AUC "
            f"{_fmt(clean['roc_auc'])}." if clean else "No test image is new to the model.")
    return (f"<p class='warn'>Warning: {overlap['n']} of {m['n']} test images ({overlap['share']:.1%}) are "
            f"byte-identical to images this run was trained ({overlap['in_train']}) or validated "
            f"({overlap['in_val']}) on; the metrics below include them. {rest}</p>")


def cross_report(path: Path, table: pd.DataFrame, grids: dict[str, pd.DataFrame], fig: Path) -> Path:
    """report.html of a cross-dataset comparison: the heatmaps, one table per measure, every cell's facts."""
    def grid_html(title: str, grid: pd.DataFrame) -> str:
        pct = title != "ROC AUC"
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in grid.columns)
        body = "".join(
            f"<tr><td>{html.escape(str(run))}</td>"
            + "".join(f"<td>{'n/a' if pd.isna(v) else (f'{v:.1%}' if pct else f'{v:.4f}')}</td>" for v in row)
            + "</tr>" for run, row in grid.iterrows())
        return f"<h3>{html.escape(title)}</h3><table><tr><th>run (trained on)</th>{head}</tr>{body}</table>"

    cells = table.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a", border=0)
    left_out = int(table["seen in training (left out)"].sum())
    note = (f"<p class='warn'>{left_out} test image(s) were in a run's training or validation data and are left "
            "out of that run's cells.</p>" if left_out else "")
    body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>fakedetect cross-dataset comparison</title><style>{CSS}</style></head><body>
<h1>Cross-dataset comparison</h1>
<p class="sub">Every run scored on every test set: ROC AUC, accuracy at the run's own threshold, and the share of
images its domain check calls unlike its training images (their verdicts are unreliable). Positive class: fake.</p>
{note}<div class="figs"><figure><img src='{_img_uri(fig)}' alt='cross-dataset heatmaps'></figure></div>
<h2>Tables</h2>{''.join(grid_html(t, g) for t, g in grids.items())}
<h2>Every cell</h2>{cells}
</body></html>
"""
    write_text(path, body)
    return path
