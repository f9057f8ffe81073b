// fakedetect upload page: no framework, nothing from a CDN.
(function () {
  "use strict";
  const form = document.getElementById("upload");
  const input = document.getElementById("file");
  const status = document.getElementById("status");
  const result = document.getElementById("result");
  const preview = document.getElementById("preview");
  const heatmap = document.getElementById("heatmap");
  const showHeat = document.getElementById("showheat");
  let previewUrl = null;
  let current = null;  // the file shown: its heatmap is asked for only when the person switches it on

  function setStatus(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function row(table, key, value) {
    const tr = table.insertRow();
    tr.insertCell().textContent = key;
    tr.insertCell().textContent = value;
  }

  function pct(p) { return (100 * p).toFixed(1) + "%"; }

  function show(r, file) {
    const fake = r.prob_fake, real = r.prob_real;
    document.getElementById("bar-fake").style.width = pct(fake);
    document.getElementById("bar-real").style.width = pct(real);
    document.getElementById("thr-mark").style.left = pct(r.threshold);
    document.getElementById("prob-fake").textContent = pct(fake);
    document.getElementById("prob-real").textContent = pct(real);
    const verdict = document.getElementById("verdict");
    const unc = document.getElementById("uncertain");
    const dom = document.getElementById("domain");
    dom.hidden = r.in_domain !== false;
    if (r.in_domain === false) {
      dom.textContent = "This image is unlike the images this model was trained on: its verdict is unreliable.";
      verdict.textContent = "No reliable verdict (leans " + r.label + ")";
      verdict.className = "verdict unreliable";
      unc.hidden = true;
    } else if (r.uncertain) {
      verdict.textContent = "Uncertain (leans " + r.label + ")";
      verdict.className = "verdict uncertain";
      unc.textContent = "The answer is not stable: " + r.uncertain_because.join("; ") +
        ". Treat this score with caution.";
      unc.hidden = false;
    } else {
      verdict.textContent = r.label === "fake" ? "Likely AI-generated" : "Likely a real photograph";
      verdict.className = "verdict " + r.label;
      unc.hidden = true;
    }
    document.getElementById("thr-text").textContent = "Called fake when P(fake) \u2265 " +
      r.threshold.toFixed(3) + " (threshold chosen on validation data).";
    const cl = r.claims;
    document.getElementById("claims").textContent = cl ?
      "This model has seen fakes from: " + (cl.seen_generators.length ? cl.seen_generators.join(", ") : "(not stated)") +
      (cl.sources_without_generators.length ? " (and " + cl.sources_without_generators.join(", ") +
        ", generators not stated)" : "") + ". On generators it has not seen: " + cl.unseen_generator_note + "." : "";
    const facts = document.getElementById("facts");
    facts.innerHTML = "";
    const im = r.image;
    row(facts, "file", file.name);
    row(facts, "format", im.format + " (" + im.mode + ")");
    row(facts, "size", im.width + " \u00d7 " + im.height + " px, " + (im.bytes / 1024).toFixed(1) + " KB");
    row(facts, "JPEG quality", im.jpeg_quality_estimate === null ? "not a JPEG" : "about " + im.jpeg_quality_estimate);
    row(facts, "EXIF metadata", im.exif ? "present" : "none");
    if (r.input) row(facts, "scored as", r.input);
    if (r.crops) {
      const c = r.crops[r.decided_by_crop];
      row(facts, "decided by", "the crop at x " + c.left + ", y " + c.top + " (" + c.width + " \u00d7 " + c.height +
        " px): P(fake) " + pct(c.prob_fake) + " (outlined in the heatmap)");
    }
    if (r.in_domain !== null && r.in_domain !== undefined) {
      row(facts, "like the training images", r.in_domain ? "yes" : "no (distance " + r.domain_distance.toFixed(1) + ")");
    }
    const variants = document.getElementById("variants");
    variants.innerHTML = "";
    row(variants, "as uploaded", "P(fake) " + pct(fake));
    for (const [name, p] of Object.entries(r.variants)) row(variants, name, "P(fake) " + pct(p));
    showHeat.disabled = false;
    showHeat.checked = false;
    applyHeat();
    result.hidden = false;
  }

  function applyHeat() {
    const on = showHeat.checked && heatmap.src;
    heatmap.hidden = !on;
    preview.hidden = !!on;
  }

  function headers() {
    // When the server was started with FAKEDETECT_API_TOKEN, ask for the token once per tab.
    const h = {};
    const token = sessionStorage.getItem("fakedetect-token");
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  async function explain() {
    // Grad-CAM costs a pass with gradients (and TensorFlow on the server): only when asked for.
    if (!showHeat.checked || heatmap.src || !current) { applyHeat(); return; }
    const file = current;
    const body = new FormData();
    body.append("image", file);
    setStatus("Computing the heatmap\u2026", false);
    try {
      const resp = await fetch("/api/v1/predict?explain=1", { method: "POST", body: body, headers: headers() });
      const data = await resp.json().catch(() => ({ error: "the server answered " + resp.status }));
      if (file !== current) return;  // another image was chosen meanwhile
      if (!resp.ok || !data.results[0].heatmap_png) {
        setStatus(data.error || ("no heatmap: error " + resp.status), true);
        return;
      }
      heatmap.src = data.results[0].heatmap_png;
      setStatus("Done: " + file.name, false);
    } catch (err) {
      setStatus("Could not reach the server: " + err, true);
    }
    applyHeat();
  }

  async function analyse(file) {
    if (!file) return;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    heatmap.removeAttribute("src");
    current = file;
    setStatus("Analysing " + file.name + "\u2026", false);
    const body = new FormData();
    body.append("image", file);
    try {
      const resp = await fetch("/api/v1/predict", { method: "POST", body: body, headers: headers() });
      if (resp.status === 401) {
        const given = window.prompt("This server needs an API token:");
        if (given) {
          sessionStorage.setItem("fakedetect-token", given);
          return analyse(file);
        }
      }
      const data = await resp.json().catch(() => ({ error: "the server answered " + resp.status }));
      if (!resp.ok) {
        result.hidden = true;
        setStatus(data.error || ("error " + resp.status), true);
        return;
      }
      show(data.results[0], file);
      setStatus("Done: " + file.name, false);
    } catch (err) {
      setStatus("Could not reach the server: " + err, true);
    }
  }

  input.addEventListener("change", () => analyse(input.files[0]));
  showHeat.addEventListener("change", explain);
  form.addEventListener("submit", (e) => { e.preventDefault(); analyse(input.files[0]); });
  ["dragenter", "dragover"].forEach((t) => form.addEventListener(t, (e) => {
    e.preventDefault(); form.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => form.addEventListener(t, (e) => {
    e.preventDefault(); form.classList.remove("over");
  }));
  form.addEventListener("drop", (e) => analyse(e.dataTransfer.files[0]));
})();
