// The library page: filter the table as you type; play a track in the bottom bar.
"use strict";

(() => {
  const q = document.getElementById("q"), rows = document.querySelectorAll("#tracks tbody tr");
  const none = document.getElementById("no-tracks");
  q.addEventListener("input", () => {
    const needle = q.value.trim().toLowerCase();
    let shown = 0;
    rows.forEach((r) => {
      const hit = !needle || r.dataset.name.includes(needle);
      r.hidden = !hit;
      shown += hit ? 1 : 0;
    });
    none.hidden = shown > 0;
  });

  const bar = document.getElementById("player-bar"), player = document.getElementById("library-player");
  const now = document.getElementById("now-playing");
  document.querySelectorAll("button.play").forEach((b) => b.addEventListener("click", () => {
    bar.hidden = false;
    now.textContent = b.dataset.name;
    player.src = "/api/tracks/" + b.dataset.id + "/audio";
    player.play().catch(() => {});
  }));
})();
