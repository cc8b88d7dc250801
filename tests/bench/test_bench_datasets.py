"""The label parsing of ``bench/datasets.py`` (no download: the texts are the packages' own, quoted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "datasets.py"
_spec = importlib.util.spec_from_file_location("musicaas_bench_datasets", _PATH)
ds = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ds  # dataclasses look their module up
_spec.loader.exec_module(ds)

ETR_README = """Music Authors List
------------------

Joseph Toscano <scarjt@pcom.net> composed:
\toptions1-jt.ogg
\trace1-jt.ogg

Christian Picon <kristianpicon@gmail.com> composed:
\tcredits1-cp.ogg

K. Schroeder <kschroeder@mirageworks.com> composed:
\tcalmrace-ks.ogg
"""


def test_etr_readme_maps_every_file_to_its_composer():
    assert ds.parse_etr_readme(ETR_README) == {
        "options1-jt.ogg": "Joseph Toscano",
        "race1-jt.ogg": "Joseph Toscano",
        "credits1-cp.ogg": "Christian Picon",
        "calmrace-ks.ogg": "K. Schroeder",
    }


def test_numbered_filename_gives_composer_and_title():
    assert ds.parse_numbered_filename("02 - Robert van Herk - City Blues.ogg") == ("Robert van Herk", "City Blues")
    assert ds.parse_numbered_filename("01 - pronobozo - lincity.ogg") == ("pronobozo", "lincity")
    assert ds.parse_numbered_filename("forest.ogg") is None


def test_hyperrogue_filename_names_the_composer_only_in_the_hr_dash_form():
    assert ds.parse_hyperrogue_filename("hr-domina-hunting.ogg") == "Domina"
    assert ds.parse_hyperrogue_filename("hr-savino-ivory.ogg") == "Savino"
    assert ds.parse_hyperrogue_filename("hr3-caves.ogg") is None


def test_copyright_music_holder_is_the_one_marked_music():
    text = """Files: *
Copyright: 2008 Andreas Roever <roever@users.sf.net> (Code)
           2008-2018 Volker Grabsch <vog@notjusthosting.com> (Code)
           2008-2018 Roberto Lorenz (Music compositon and arrangement)
           2008-2018 Harald Radke <harryrat@postnuklear.de> (Theme graphics)
"""
    assert ds.copyright_music_holder(text) == "Roberto Lorenz"
    assert ds.copyright_music_holder("Copyright: 2008 Someone (Code)") is None


def test_copyright_upstream_author_and_files_star_holder():
    old = "It was downloaded from http://www.frozen-bubble.org/\n\nUpstream Author: Matthias Le Bidan <matthias.le_bidan@caramail.com>\n"
    assert ds.copyright_upstream_author(old) == "Matthias Le Bidan"
    dep5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Source: http://www.asc-hq.de/

Files: *
Copyright: 2002 Michael Kievernagel
License: GPL-2+

Files: debian/*
Copyright: 2004-2006, Bartosz Fenski <fenio@debian.org>
License: GPL-2+
"""
    assert ds.copyright_files_star_holder(dep5) == "Michael Kievernagel"


@pytest.mark.parametrize("raw, label", [("http://zhaymusic.com/", "zhaymusic.com"), ("  Jason   Lavallee ", "Jason Lavallee"),
                                        ("Wansti", "Wansti")])
def test_names_are_normalised(raw, label):
    assert ds.normalise_name(raw) == label


def test_tag_value_reads_the_first_non_empty_value_case_insensitively():
    assert ds.tag_value({"ARTIST": ["Maxstack"], "album": [""]}, "artist") == "Maxstack"
    assert ds.tag_value({"album": [""]}, "album") is None
    assert ds.tag_value(None, "artist") is None


def test_cap_per_composer_keeps_the_first_and_every_unknown():
    recs = [ds.Recording("p", Path(f"/x/p/{i}.ogg"), str(i), c, "a", 60.0, "tag") for i, c in enumerate("AAAB")]
    recs.append(ds.Recording("p", Path("/x/p/u.ogg"), "u", None, "a", 60.0, ""))
    kept = ds.cap_per_composer(recs, cap=2)
    assert [r.title for r in kept] == ["0", "1", "3", "u"]


def test_forbidden_packages_are_refused_before_any_download(tmp_path):
    for name in ds.FORBIDDEN:
        with pytest.raises(ValueError, match="independent evaluation"):
            ds.fetch_package(name, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())
