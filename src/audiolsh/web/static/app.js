// The query page: drop, pick or record a clip, POST it to /api/analyse, show the answer;
// or, from the library page (/?track=ID), the tracks that sound like a library track.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), fileInput = $("file"), recordButton = $("record");
  const RECORD_MAX_S = 20;
  const WORST_UNDEFINED = "Least similar is not defined for peak sets: their Jaccard similarity has no opposite.";
  const PAGE_K = Number(document.currentScript.dataset.k) || 5;
  // result: the shown answer; lists: "by|worst" -> {by, worst, results, error}.
  let result = null, lists = new Map(), activeBy = "combined", queryUrl = null, recorder = null;
  let lastFile = null, trackId = null;

  const basename = (p) => String(p).split(/[\\/]/).pop();
  // Rounded, not floored: a match at 44.6 s starts at 0:45.
  const clock = (s) => {
    if (s == null || !isFinite(s)) return "?";
    const t = Math.round(s), h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(sec).padStart(2, "0");
  };
  // "Artist - Title" from a record's tags when it has them, else the file name.
  const displayName = (r) => (r.title ? (r.artist ? r.artist + " - " + r.title : r.title) : basename(r.path));
  const audioSrc = (id, offset) =>
    "/api/tracks/" + id + "/audio" + (offset ? "#t=" + Math.max(0, offset).toFixed(2) : "");
  const kValue = () => Number($("k").value) || PAGE_K;

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // A name that wraps at its word boundaries: spaces, and after _ and - in file names.
  function nameNode(text, className, hover) {
    const node = el("span", { className: className || "name", title: hover || text });
    String(text).split(/(?<=[_\-])/).forEach((part, i) => {
      if (i) node.append(el("wbr"));
      node.append(part);
    });
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

  function play(audio, id, offset) {
    audio.hidden = false;
    audio.src = audioSrc(id, offset);
    seekOnLoad(audio, offset);
    audio.play().catch(() => {});
  }

  // One player at a time: starting one pauses every other.
  document.addEventListener("play", (e) => {
    document.querySelectorAll("audio").forEach((a) => { if (a !== e.target && !a.paused) a.pause(); });
  }, true);

  async function getJson(url, options) {
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) throw new Error(data && data.detail ? data.detail : "the server answered " + response.status);
    return data;
  }

  function failed(err) {
    const message = err instanceof TypeError ? "the server cannot be reached" : err.message;
    showError("Sorry, that did not work: " + message);
  }

  async function analyse(file) {
    showError("");
    if (!file) return;
    if (file.size === 0) { showError(file.name + ": the file is empty."); return; }
    lastFile = file;
    trackId = null;
    if (window.location.search) history.replaceState(null, "", "/"); // no longer the ?track= page
    showStatus("Analysing " + (file.name || "the recording") + "…");
    $("results").hidden = true;
    if (queryUrl) URL.revokeObjectURL(queryUrl);
    queryUrl = URL.createObjectURL(file);
    const body = new FormData();
    body.append("file", file, file.name || "recording");
    const t0 = performance.now();
    try {
      // min_confidence=0: a weak best candidate comes back too, flagged (matched false) and shown as such.
      const data = await getJson("/api/analyse?min_confidence=0&k=" + kValue(), { method: "POST", body });
      result = data;
      lists = new Map(data.similar.map((l) => [l.by + "|" + l.worst, l]));
      render(data, performance.now() - t0);
    } catch (err) {
      failed(err);
    } finally {
      showStatus("");
    }
  }

  function render(data, roundTripMs) {
    const card = $("match-card"), player = $("match-player"), meter = $("confidence");
    const best = data.identify ? data.identify.match : null;
    const match = best && best.matched ? best : null;
    $("match-eyebrow").textContent = "Identification";
    card.classList.toggle("found", !!match);
    card.classList.toggle("missing", !match);
    if (match) {
      $("match-title").replaceChildren(nameNode(displayName(match), "title", match.path));
      const speed = Math.abs(match.speed - 1) > 0.005 ? " · speed " + match.speed.toFixed(2) + "×" : "";
      // The same audio in other tracks (a remaster, a compilation), matched as surely.
      const also = (match.also || []).map((o) => displayName(o) + " at " + clock(o.offset_s)).join(", ");
      // A weak candidate named once its waveform agreed with the track's file there.
      const checked = match.verified != null ? " · checked against the track's audio" : "";
      $("match-detail").textContent = "The clip starts at " + clock(match.offset_s) + " in this track · confidence "
        + Math.round(match.confidence * 100) + " %" + speed + checked
        + (also ? " · the same audio is also in " + also : "");
      $("match-detail").title = match.offset_s.toFixed(2) + " s";
      meter.hidden = false;
      meter.firstElementChild.style.width = Math.round(match.confidence * 100) + "%";
      player.hidden = false;
      player.src = audioSrc(match.track_id, match.offset_s);
      seekOnLoad(player, match.offset_s);
    } else {
      $("match-title").textContent = data.identify ? "Not in the library" : "Identification is not available";
      $("match-detail").title = "";
      const reason = data.identify && data.identify.reason ? " (" + data.identify.reason + ")" : "";
      const weak = best ? " Closest candidate, below the threshold: " + displayName(best) + " at "
        + clock(best.offset_s) + ", confidence " + Math.round(best.confidence * 100) + " %." : "";
      $("match-detail").textContent = data.identify
        ? "No track of the library matches this clip well enough" + reason + "." + weak
          + " The lists below show what sounds closest."
        : "This library was built without fingerprints.";
      meter.hidden = true;
      player.hidden = true;
      player.removeAttribute("src");
    }
    renderSegments(data);
    $("clip-card").hidden = false;
    $("downloads").hidden = false;
    $("query-name").textContent = data.query;
    const beat = data.plots.beat_spectrum;
    $("query-detail").textContent = clock(data.duration_s) + " analysed"
      + (beat.tempo_bpm ? " · tempo ≈ " + Math.round(beat.tempo_bpm) + " BPM" : "");
    $("query-player").src = queryUrl;
    const available = new Set(data.similar.map((l) => l.by));
    showTabs(available);
    renderLists();
    $("timing").textContent = "answered in " + Math.round(roundTripMs) + " ms (server " + Math.round(data.elapsed_ms) + " ms)";
    $("results").hidden = false;
    // Draw after the section is visible, so the canvases have their size.
    requestAnimationFrame(() => {
      Plots.spectrogram($("spectrogram"), data.plots.spectrogram);
      Plots.beatSpectrum($("beat"), beat);
    });
  }

  function showTabs(available) {
    document.querySelectorAll(".tabs [data-by]").forEach((t) => { t.hidden = !available.has(t.dataset.by); });
    if (!available.has(activeBy) && available.size) activeBy = [...available][0];
  }

  // The timeline of a long upload: which track plays when (the CLI's identify --segments).
  function renderSegments(data) {
    // Only confident stretches on the timeline (the page asks for weak candidates for the match card).
    const segs = data.segments && data.segments.filter((s) => s.matched), card = $("segments-card");
    card.hidden = !segs;
    if (!segs) return;
    const total = Math.max(data.scanned_s, ...segs.map((s) => s.end_s));
    const names = [...new Set(segs.map((s) => s.track_id))];
    $("segments-detail").textContent = segs.length
      ? segs.length + " stretch" + (segs.length === 1 ? "" : "es") + " of " + names.length + " track"
        + (names.length === 1 ? "" : "s") + " in " + clock(data.scanned_s) + " scanned. Click one to hear it."
      : "No track of the library plays in the " + clock(data.scanned_s) + " scanned.";
    $("timeline-end").textContent = clock(total);
    const timeline = $("timeline"), list = $("segment-list");
    timeline.replaceChildren();
    list.replaceChildren();
    segs.forEach((s) => {
      const name = displayName(s), colour = "c" + (names.indexOf(s.track_id) % 8 + 1);
      const when = clock(s.start_s) + "–" + clock(s.end_s);
      const hear = () => play($("segment-player"), s.track_id, s.offset_s);
      const block = el("button", { type: "button", className: "segment " + colour, title: when + " " + name,
                                   onclick: hear }, el("span", { textContent: name }));
      block.setAttribute("role", "listitem");
      block.style.left = (100 * s.start_s / total) + "%";
      block.style.width = Math.max(0.5, 100 * (s.end_s - s.start_s) / total) + "%";
      timeline.append(block);
      list.append(el("li", {},
        el("span", { className: "swatch " + colour }),
        el("button", { type: "button", className: "linklike", textContent: when, onclick: hear }),
        nameNode(name, "name", s.path),
        el("span", { className: "muted small", textContent: "from " + clock(s.offset_s) + " of the track · "
                                                             + Math.round(s.confidence * 100) + " %" })));
    });
  }

  async function renderLists() {
    document.querySelectorAll(".tabs [data-by]").forEach((t) => {
      t.setAttribute("aria-selected", String(t.dataset.by === activeBy));
    });
    const by = activeBy;
    if (trackId != null) {
      try {
        await fetchTrackLists(by);
      } catch (err) {
        failed(err);
        return;
      }
      if (by !== activeBy) return; // another tab was picked meanwhile
    }
    for (const worst of [false, true]) {
      const list = $(worst ? "least" : "most"), m3u = $(worst ? "m3u-least" : "m3u-most");
      list.replaceChildren();
      list.classList.toggle("least", worst);
      const entry = lists.get(by + "|" + worst);
      m3u.hidden = !(entry && entry.results.length);
      if (!entry || entry.error || !entry.results.length) {
        list.append(el("li", { className: "empty", textContent: entry && entry.error ? entry.error : "No tracks." }));
        continue;
      }
      const stem = (queryStem() + " " + (worst ? "least" : "most") + " like by " + by).replace(/[^A-Za-z0-9 ._-]+/g, "_");
      m3u.href = "/api/playlist.m3u?" + entry.results.map((r) => "ids=" + r.track_id).join("&")
        + "&name=" + encodeURIComponent(stem.slice(0, 100));
      for (const r of entry.results) list.append(resultItem(r));
    }
  }

  function resultItem(r) {
    const score = el("span", { className: "score", textContent: r.score.toFixed(3) });
    if (r.raw_score != null) score.title = "raw score " + r.raw_score;
    const bar = el("div", { className: "bar" }, el("span"));
    bar.firstElementChild.style.width = Math.max(0, Math.min(1, r.score)) * 100 + "%";
    const where = r.offset_s == null ? "" : "passage at " + clock(r.offset_s)
      + (r.query_offset_s != null ? " (your " + (trackId != null ? "track" : "clip") + "'s " + clock(r.query_offset_s) + ")" : "");
    const meta = el("div", { className: "meta small" }, el("span", { className: "muted", textContent: where }),
                    el("a", { href: "/?track=" + r.track_id, textContent: "Similar tracks" }));
    const audio = el("audio", { controls: true, preload: "none", src: audioSrc(r.track_id, r.offset_s) });
    if (r.offset_s) seekOnLoad(audio, r.offset_s);
    return el("li", {},
      el("div", { className: "row" }, el("span", { className: "rank", textContent: r.rank + "." }),
         nameNode(displayName(r), "name", r.path), score),
      bar, meta, audio);
  }

  // A library track as the query (the CLI's similar --track): its lists come per tab.
  async function fetchTrackLists(by) {
    const k = kValue();
    for (const worst of [false, true]) {
      const key = by + "|" + worst;
      if (lists.has(key)) continue;
      if (worst && by === "peaks") {
        lists.set(key, { by, worst, results: [], error: WORST_UNDEFINED });
        continue;
      }
      const data = await getJson("/api/tracks/" + trackId + "/similar?by=" + by + "&k=" + k + "&worst=" + worst);
      lists.set(key, { by, worst, ...data });
      if (!result) result = { query: data.query, track_id: trackId };
    }
  }

  async function showTrack(id) {
    showError("");
    trackId = id;
    result = null;
    lists = new Map();
    showStatus("Finding tracks like track " + id + "…");
    try {
      await fetchTrackLists(activeBy);
    } catch (err) {
      failed(err);
      showStatus("");
      return;
    }
    showStatus("");
    const name = basename(result.query);
    $("match-eyebrow").textContent = "Library track";
    $("match-card").classList.remove("found", "missing");
    $("match-title").replaceChildren(nameNode(name, "title", result.query));
    $("match-detail").textContent = "Tracks of the library that sound like it; the track itself is left out.";
    $("match-detail").title = "";
    $("confidence").hidden = true;
    $("match-player").hidden = false;
    $("match-player").src = audioSrc(id, 0);
    for (const id of ["segments-card", "clip-card", "downloads"]) $(id).hidden = true;
    showTabs(new Set([...document.querySelectorAll(".tabs [data-by]")].map((t) => t.dataset.by)));
    $("results").hidden = false;
    renderLists();
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
    for (const s of result.segments || []) {
      rows.push([result.query, "segment", "fingerprint", "", s.track_id, s.path, "", s.confidence, s.offset_s,
                 s.start_s]);
    }
    for (const l of result.similar) {
      for (const r of l.results) {
        rows.push([result.query, l.worst ? "least_similar" : "most_similar", l.by, r.rank, r.track_id, r.path, r.score, "",
                   r.offset_s, r.query_offset_s]);
      }
    }
    return rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
  }

  const queryStem = () => basename((result && result.query) || "query").replace(/\.[^.]*$/, "");
  const stem = () => queryStem().replace(/[^\w.-]+/g, "_");
  $("download-json").addEventListener("click", () =>
    download(stem() + "-audiolsh.json", "application/json", JSON.stringify(resultsOnly(), null, 2)));
  $("download-csv").addEventListener("click", () => download(stem() + "-audiolsh.csv", "text/csv", toCsv()));

  document.querySelectorAll(".tabs [data-by]").forEach((t) => t.addEventListener("click", () => {
    activeBy = t.dataset.by;
    renderLists();
  }));
  $("k").addEventListener("change", () => {
    if (trackId != null) {
      lists = new Map();
      renderLists();
    } else if (lastFile) {
      analyse(lastFile);
    }
  });

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
      $("record-label").textContent = "Stop (" + clock(Math.floor(s)) + ")";
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
    if (result && result.plots && !$("results").hidden) {
      Plots.spectrogram($("spectrogram"), result.plots.spectrogram);
      Plots.beatSpectrum($("beat"), result.plots.beat_spectrum);
    }
  });

  const asked = new URLSearchParams(window.location.search).get("track");
  if (asked != null && /^\d+$/.test(asked)) showTrack(Number(asked));
})();
