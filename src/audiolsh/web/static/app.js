// The query page: drop, pick or record a clip, POST it to /api/analyse, show the answer.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), fileInput = $("file"), recordButton = $("record");
  const RECORD_MAX_S = 20;
  let result = null, activeBy = "rhythm", queryUrl = null, recorder = null;

  const basename = (p) => String(p).split(/[\\/]/).pop();
  const clock = (s) => {
    if (s == null || !isFinite(s)) return "?";
    const m = Math.floor(s / 60), sec = Math.floor(s % 60);
    return m + ":" + String(sec).padStart(2, "0");
  };
  const audioSrc = (trackId, offset) =>
    "/api/tracks/" + trackId + "/audio" + (offset ? "#t=" + Math.max(0, offset).toFixed(2) : "");

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  function showStatus(text) {
    $("status").hidden = !text;
    $("status-text").textContent = text || "";
  }

  function showError(text) {
    $("error").hidden = !text;
    $("error").textContent = text || "";
  }

  function seekOnLoad(audio, offset) {
    // Media fragments (#t=) start most browsers at the offset; this covers the rest.
    audio.addEventListener("loadedmetadata", () => {
      if (offset > 0 && Math.abs(audio.currentTime - offset) > 0.5) audio.currentTime = offset;
    }, { once: true });
  }

  async function analyse(file) {
    showError("");
    if (!file) return;
    if (file.size === 0) { showError(file.name + ": the file is empty."); return; }
    showStatus("Analysing " + (file.name || "the recording") + "…");
    $("results").hidden = true;
    if (queryUrl) URL.revokeObjectURL(queryUrl);
    queryUrl = URL.createObjectURL(file);
    const body = new FormData();
    body.append("file", file, file.name || "recording");
    const t0 = performance.now();
    try {
      const response = await fetch("/api/analyse", { method: "POST", body });
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) {
        const detail = data && data.detail ? data.detail : "the server answered " + response.status;
        throw new Error(detail);
      }
      result = data;
      render(data, performance.now() - t0);
    } catch (err) {
      const message = err instanceof TypeError ? "the server cannot be reached" : err.message;
      showError("Sorry, that did not work: " + message);
    } finally {
      showStatus("");
    }
  }

  function render(data, roundTripMs) {
    const card = $("match-card"), player = $("match-player"), meter = $("confidence");
    const match = data.identify ? data.identify.match : null;
    card.classList.toggle("found", !!match);
    card.classList.toggle("missing", !match);
    if (match) {
      $("match-title").textContent = basename(match.path);
      $("match-title").title = match.path;
      const speed = Math.abs(match.speed - 1) > 0.005 ? " · speed " + match.speed.toFixed(2) + "×" : "";
      $("match-detail").textContent = "The clip starts at " + clock(match.offset_s) + " in this track · confidence "
        + Math.round(match.confidence * 100) + " %" + speed;
      meter.hidden = false;
      meter.firstElementChild.style.width = Math.round(match.confidence * 100) + "%";
      player.hidden = false;
      player.src = audioSrc(match.track_id, match.offset_s);
      seekOnLoad(player, match.offset_s);
    } else {
      $("match-title").textContent = data.identify ? "Not in the library" : "Identification is not available";
      $("match-title").title = "";
      $("match-detail").textContent = data.identify
        ? "No track of the library matches this clip well enough. The lists below show what sounds closest."
        : "This library was built without fingerprints.";
      meter.hidden = true;
      player.hidden = true;
      player.removeAttribute("src");
    }
    $("query-name").textContent = data.query;
    $("query-detail").textContent = clock(data.duration_s) + " analysed";
    $("query-player").src = queryUrl;
    const tabs = document.querySelectorAll(".tabs [data-by]");
    const available = new Set(data.similar.map((l) => l.by));
    tabs.forEach((t) => { t.hidden = !available.has(t.dataset.by); });
    if (!available.has(activeBy) && available.size) activeBy = [...available][0];
    renderLists();
    $("timing").textContent = "answered in " + Math.round(roundTripMs) + " ms (server " + Math.round(data.elapsed_ms) + " ms)";
    $("results").hidden = false;
    // Draw after the section is visible, so the canvases have their size.
    requestAnimationFrame(() => {
      Plots.spectrogram($("spectrogram"), data.plots.spectrogram);
      Plots.beatSpectrum($("beat"), data.plots.beat_spectrum);
    });
  }

  function renderLists() {
    document.querySelectorAll(".tabs [data-by]").forEach((t) => {
      t.setAttribute("aria-selected", String(t.dataset.by === activeBy));
    });
    for (const worst of [false, true]) {
      const list = $(worst ? "least" : "most");
      list.replaceChildren();
      list.classList.toggle("least", worst);
      const entry = result.similar.find((l) => l.by === activeBy && l.worst === worst);
      if (!entry || entry.error || !entry.results.length) {
        list.append(el("li", { className: "empty", textContent: entry && entry.error ? entry.error : "No tracks." }));
        continue;
      }
      for (const r of entry.results) {
        const score = el("span", { className: "score", textContent: r.score.toFixed(3) });
        const bar = el("div", { className: "bar" }, el("span"));
        // score is a percentile in [0, 1] in every mode (raw_score is the mode's own value)
        bar.firstElementChild.style.width = Math.max(0, Math.min(1, r.score)) * 100 + "%";
        bar.title = "raw " + r.raw_score;
        const where = r.offset_s != null ? el("div", { className: "muted small", textContent: "passage at " + clock(r.offset_s) }) : null;
        const audio = el("audio", { controls: true, preload: "none", src: audioSrc(r.track_id, r.offset_s) });
        if (r.offset_s) seekOnLoad(audio, r.offset_s);
        list.append(el("li", {},
          el("div", { className: "row" }, el("span", { className: "rank", textContent: r.rank + "." }),
             el("span", { className: "name", textContent: basename(r.path), title: r.path }), score),
          bar, where, audio));
      }
    }
  }

  function download(name, type, text) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function resultsOnly() {
    const { plots, ...rest } = result;
    return rest;
  }

  function csvCell(v) {
    const s = v == null ? "" : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function toCsv() {
    const header = ["query", "kind", "by", "rank", "track_id", "path", "score", "confidence", "offset_s", "query_offset_s"];
    const rows = [header];
    const m = result.identify ? result.identify.match : null;
    rows.push([result.query, "match", "fingerprint", m ? 1 : "", m ? m.track_id : "", m ? m.path : "no match",
               m ? m.score : "", m ? m.confidence : "", m ? m.offset_s : "", ""]);
    for (const l of result.similar) {
      for (const r of l.results) {
        rows.push([result.query, l.worst ? "least_similar" : "most_similar", l.by, r.rank, r.track_id, r.path, r.score, "",
                   r.offset_s, r.query_offset_s]);
      }
    }
    return rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
  }

  const stem = () => (result.query || "query").replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_");
  $("download-json").addEventListener("click", () =>
    download(stem() + "-audiolsh.json", "application/json", JSON.stringify(resultsOnly(), null, 2)));
  $("download-csv").addEventListener("click", () => download(stem() + "-audiolsh.csv", "text/csv", toCsv()));

  document.querySelectorAll(".tabs [data-by]").forEach((t) => t.addEventListener("click", () => {
    activeBy = t.dataset.by;
    renderLists();
  }));

  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) analyse(fileInput.files[0]);
    fileInput.value = "";
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => {
    const files = e.dataTransfer ? e.dataTransfer.files : null;
    if (files && files.length) analyse(files[0]);
  });
  // A file dropped outside the zone must not make the browser navigate away.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  // Recording from the microphone -------------------------------------------------------
  function recorderType() {
    if (!window.MediaRecorder) return null;
    for (const t of ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4", "audio/webm"]) {
      if (MediaRecorder.isTypeSupported(t)) return t;
    }
    return "";
  }

  async function startRecording() {
    showError("");
    const type = recorderType();
    if (type === null || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("This browser cannot record audio here (recording needs a secure page: https or localhost).");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false } });
    } catch (err) {
      showError("The microphone is not available: " + (err.message || err.name));
      return;
    }
    const chunks = [];
    recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    const started = Date.now();
    const tick = setInterval(() => {
      const s = (Date.now() - started) / 1000;
      $("record-label").textContent = "Stop (" + clock(s) + ")";
      if (s >= RECORD_MAX_S) stopRecording();
    }, 250);
    recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
    recorder.addEventListener("stop", () => {
      clearInterval(tick);
      stream.getTracks().forEach((t) => t.stop());
      recordButton.classList.remove("recording");
      $("record-label").textContent = "Record";
      const mime = recorder.mimeType || type || "audio/webm";
      const ext = mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm";
      recorder = null;
      analyse(new File(chunks, "recording." + ext, { type: mime }));
    });
    recorder.start();
    recordButton.classList.add("recording");
    $("record-label").textContent = "Stop (0:00)";
  }

  function stopRecording() {
    if (recorder && recorder.state !== "inactive") recorder.stop();
  }

  recordButton.addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
  window.addEventListener("resize", () => {
    if (result && !$("results").hidden) {
      Plots.spectrogram($("spectrogram"), result.plots.spectrogram);
      Plots.beatSpectrum($("beat"), result.plots.beat_spectrum);
    }
  });
})();
