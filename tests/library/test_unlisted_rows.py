"""An index run that stopped after committing its modes but before the catalogue leaves rows of
tracks no catalogue lists: answers pass them over as if they were not there, and the next run
lists them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from audiolsh.audio import content_hash
from audiolsh.library import Library, extract, index_audio


@pytest.fixture(scope="module")
def music(synth_tracks: Callable[..., list[Path]]) -> list[Path]:
    return synth_tracks(5, 20.0, 150)


def test_rows_of_unlisted_tracks_never_take_the_place_of_answers(
    tmp_path: Path, music: list[Path], answers: Callable[..., list[object]]
) -> None:
    listed, stopped = music[:3], music[3:]
    with Library.create(tmp_path / "lib") as lib:
        index_audio(lib, listed, workers=1)
        before = answers(lib, listed)
        cfg = lib.config
        part = lib.build([extract(str(f), content_hash(f), cfg.modes, cfg.window_s, cfg.hop_s)
                          for f in stopped])
        for name, index in lib.indexes.items():  # what `attach` commits before the catalogue
            index.attach(part.builds.get(name, []))
        assert len(lib.tracks()) == len(listed)
        assert answers(lib, listed) == before
        # the next run finds the modes hold the tracks and commits the catalogue only
        index_audio(lib, stopped, workers=1)
        assert len(lib.tracks()) == len(music)
        assert answers(lib, listed) != before
