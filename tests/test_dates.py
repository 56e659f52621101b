"""Tests for the built-in dates corpus (s2s.data.dates)."""

import calendar
import datetime
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from s2s.data import dates

ROOT = Path(__file__).resolve().parents[1]
NUMERIC_FORMATS = [  # formats written only with digits and separators
    name for name, parts in dates._PARTS.items()
    if set(parts[1::2]) <= {"year", "yy", "m", "mm", "d", "dd"}
    and not re.search(r"\w", "".join(parts[::2]))
]


@pytest.fixture(scope="module")
def corpus():
    """100k examples over all three splits (mostly train, as in real use)."""
    return (
        dates.generate("train", 80_000, seed=1)
        + dates.generate("validation", 10_000, seed=1)
        + dates.generate("test", 10_000, seed=1)
    )


def _two_digit_year(yy):
    return 1900 + yy if yy >= 50 else 2000 + yy


def _parse_year(text):
    digits = text.lstrip("'")
    assert digits.isdigit() and len(digits) in (2, 4), text
    assert len(digits) == 4 or text.startswith("'") or len(text) == 2
    return int(digits) if len(digits) == 4 else _two_digit_year(int(digits))


def _parse_month(text, lang):
    if text.isdigit():
        assert len(text) <= 2, text
        return int(text)
    matches = {
        i + 1
        for table in (dates.MONTHS, dates.MONTH_ABBRS)
        for i, name in enumerate(table.get(lang, ()))
        if name.lower() == text.lower()
    }
    assert len(matches) == 1, (text, lang)
    return matches.pop()


def _parse_day(text, lang):
    if text.isdigit():
        assert len(text) <= 2, text
        return int(text)
    if lang == "fr":
        assert text == "1er", text
        return 1
    m = re.fullmatch(r"(\d{1,2})(st|nd|rd|th)", text)
    if m:
        day = int(m.group(1))
        expected = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
        assert m.group(2) == expected, text
        return day
    assert lang == "en" and text in dates.ORDINAL_WORDS, text
    return dates.ORDINAL_WORDS.index(text) + 1


def _parse(example):
    """The date that the spans of `example` spell, read with the module's own name tables."""
    src, lang = example["source"], example["lang"]
    piece = {k: src[slice(*example[k + "_span"])] for k in ("year", "month", "day")}
    year = _parse_year(piece["year"])
    return datetime.date(year, _parse_month(piece["month"], lang), _parse_day(piece["day"], lang))


def test_deterministic_within_and_across_processes():
    a = dates.generate("train", 500, seed=3)
    assert a == dates.generate("train", 500, seed=3)
    assert a != dates.generate("train", 500, seed=4)
    assert dates.generate("test", 500, seed=3) != dates.generate("validation", 500, seed=3)
    assert dates.generate("train", 100, seed=3) == a[:100]  # a prefix, not a reshuffle
    code = "from s2s.data import dates; print(dates.generate('train', 500, seed=3))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": str(salt), "PYTHONPATH": str(ROOT)},
        ).stdout
        for salt in (1, 2)
    }
    assert outs == {repr(a) + "\n"}


def test_record_shape(corpus):
    for ex in corpus[:2000]:
        assert list(ex) == [
            "source", "target", "year_span", "month_span", "day_span", "format", "lang"
        ]
        assert ex["lang"] == dates.FORMATS[ex["format"]][0]
        for key in ("year_span", "month_span", "day_span"):
            assert isinstance(ex[key], list) and len(ex[key]) == 2


def test_splits_are_disjoint_by_calendar_date():
    by_split = {}
    for split in dates.SPLITS:
        examples = dates.generate(split, 5_000, seed=7)
        by_split[split] = {ex["target"] for ex in examples}
        assert all(dates.split_of(datetime.date.fromisoformat(t)) == split for t in by_split[split])
    assert not by_split["train"] & by_split["test"]
    assert not by_split["train"] & by_split["validation"]
    assert not by_split["validation"] & by_split["test"]
    # Roughly 90/5/5 over the whole calendar.
    counts = {s: len(dates._dates(s, False)) for s in dates.SPLITS}
    total = sum(counts.values())
    assert total == (datetime.date(2099, 12, 31) - datetime.date(1900, 1, 1)).days + 1
    assert 0.88 < counts["train"] / total < 0.92
    assert 0.04 < counts["test"] / total < 0.06 and 0.04 < counts["validation"] / total < 0.06


def test_targets_are_real_dates_spelled_by_the_spans(corpus):
    for ex in corpus:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", ex["target"])
        target = datetime.date.fromisoformat(ex["target"])  # raises on 1999-02-29 etc.
        assert datetime.date(1900, 1, 1) <= target <= datetime.date(2099, 12, 31)
        assert _parse(ex) == target, ex


def test_spans_are_ordered_non_overlapping_and_exact(corpus):
    for ex in corpus:
        src = ex["source"]
        spans = sorted(ex[k] for k in ("year_span", "month_span", "day_span"))
        for (s, e), (s2, _) in zip(spans, spans[1:]):
            assert 0 <= s < e <= s2, ex
        assert spans[-1][1] <= len(src)
        for s, e in spans:  # spans cover whole tokens, no stray spaces or punctuation
            text = src[s:e]
            assert text == text.strip(" ,-/"), ex
            assert s == 0 or not src[s - 1].isalnum(), ex
            assert e == len(src) or not src[e].isalnum(), ex
        year = src[slice(*ex["year_span"])]
        assert re.sub(r"\D", "", year)[-2:] == ex["target"][2:4]


def test_spans_for_repeated_numbers():
    source, spans = dates.render(datetime.date(2004, 4, 4), "de_dd_mm_y")
    assert source == "04.04.2004"
    assert spans == {"day_span": [0, 2], "month_span": [3, 5], "year_span": [6, 10]}
    source, spans = dates.render(datetime.date(2011, 11, 11), "en_us_m_d_yy")
    assert source == "11/11/11"
    assert spans == {"month_span": [0, 2], "day_span": [3, 5], "year_span": [6, 8]}


@pytest.mark.parametrize(
    "name, source, year, month, day",
    [
        ("en_weekday_the_dth_of_month_y", "Saturday, the 4th of July, 1998", "1998", "July", "4th"),
        ("en_the_dword_of_month_y", "the fourth of July, 1998", "1998", "July", "fourth"),
        ("en_dth_of_month_yy", "4th of July '98", "'98", "July", "4th"),
        ("en_us_m_d_yy", "7/4/98", "98", "7", "4"),
        ("en_wd_d_mon_y_upper", "SAT, 4 JUL 1998", "1998", "JUL", "4"),
        ("fr_weekday_d_month_y", "samedi 4 juillet 1998", "1998", "juillet", "4"),
        ("fr_d_mon_y", "4 juil. 1998", "1998", "juil.", "4"),
        ("de_wd_d_month_y", "Sa., 4. Juli 1998", "1998", "Juli", "4"),
        ("de_d_m_yy", "4.7.98", "98", "7", "4"),
        ("es_weekday_d_de_month_de_y", "sábado, 4 de julio de 1998", "1998", "julio", "4"),
        ("iso_y_mm_dd_dot", "1998.07.04", "1998", "07", "04"),
    ],
)
def test_known_renderings(name, source, year, month, day):
    got, spans = dates.render(datetime.date(1998, 7, 4), name)
    assert got == source
    assert [got[slice(*spans[k + "_span"])] for k in ("year", "month", "day")] == [year, month, day]


def test_name_tables():
    """The tables the other tests read with are themselves right (checked independently)."""
    assert dates.MONTHS["en"] == tuple(calendar.month_name)[1:]
    assert dates.MONTH_ABBRS["en"] == tuple(calendar.month_abbr)[1:]
    assert dates.WEEKDAYS["en"] == tuple(calendar.day_name)
    assert dates.WEEKDAY_ABBRS["en"] == tuple(calendar.day_abbr)
    for full, abbr in [(dates.MONTHS, dates.MONTH_ABBRS), (dates.WEEKDAYS, dates.WEEKDAY_ABBRS)]:
        for lang, names in abbr.items():
            assert len(names) == len(full[lang]) and len(set(names)) == len(names)
            for short, long in zip(names, full[lang]):  # "juil." abbreviates "juillet"
                assert long.startswith(short.rstrip(".")), (short, long)
    assert [len(dates.MONTHS[lang]) for lang in ("fr", "de", "es")] == [12, 12, 12]
    assert (dates.MONTHS["fr"][1], dates.MONTHS["fr"][7], dates.MONTHS["fr"][11]) == (
        "février", "août", "décembre")
    assert (dates.MONTHS["de"][2], dates.MONTHS["es"][8]) == ("März", "septiembre")
    assert (dates.WEEKDAYS["fr"][0], dates.WEEKDAYS["de"][5], dates.WEEKDAYS["es"][2]) == (
        "lundi", "Samstag", "miércoles")
    assert " ".join(dates.ORDINAL_WORDS) == (
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth"
        " thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"
        " twenty-first twenty-second twenty-third twenty-fourth twenty-fifth twenty-sixth"
        " twenty-seventh twenty-eighth twenty-ninth thirtieth thirty-first"
    )


def test_french_first_of_month_and_accents():
    assert dates.render(datetime.date(1998, 7, 1), "fr_le_d_month_y")[0] == "le 1er juillet 1998"
    assert dates.render(datetime.date(1998, 2, 1), "fr_d_month_y")[0] == "1er février 1998"
    assert dates.render(datetime.date(1998, 8, 15), "fr_d_month_y")[0] == "15 août 1998"
    assert dates.render(datetime.date(1998, 3, 2), "de_d_month_y")[0] == "2. März 1998"
    assert dates.render(datetime.date(1998, 7, 1), "es_weekday_d_de_month_de_y")[0] == (
        "miércoles, 1 de julio de 1998"
    )


def test_weekday_names_are_true(corpus):
    seen = 0
    for ex in corpus:
        lang, template = dates.FORMATS[ex["format"]]
        # Text outside the three spans, as words (German abbreviations keep their dot).
        src = ex["source"]
        outside = src
        for k in ("year_span", "month_span", "day_span"):
            s, e = ex[k]
            outside = outside[:s] + " " * (e - s) + outside[e:]
        words = {w.lower() for w in re.findall(r"[^\W\d_]+\.?", outside)}
        words |= {w.rstrip(".") for w in words}
        found = {
            i
            for table in (dates.WEEKDAYS, dates.WEEKDAY_ABBRS)
            for i, name in enumerate(table.get(lang, ()))
            if name.lower() in words
        }
        if "weekday" in template or "{wd}" in template:
            seen += 1
            assert found == {datetime.date.fromisoformat(ex["target"]).weekday()}, ex
        else:
            assert not found, ex
    assert seen > 5_000


def test_unambiguous_over_100k_examples(corpus):
    target_of = {}
    for ex in corpus:
        assert target_of.setdefault(ex["source"], ex["target"]) == ex["target"], ex["source"]
    assert len(target_of) > 50_000


def test_numeric_formats_unambiguous_exhaustively():
    """Every day of years at the edges of the range and of the two-digit window, leap years
    included, in every purely numeric format: where day/month or century clashes would live."""
    assert {"en_us_m_d_yy", "de_d_m_yy", "iso_y_mm_dd_slash"} <= set(NUMERIC_FORMATS)
    target_of = {}
    for year in (1900, 1912, 1949, 1950, 1999, 2000, 2004, 2012, 2049, 2050, 2099):
        day = datetime.date(year, 1, 1)
        while day.year == year:
            for name in NUMERIC_FORMATS:
                if name in dates._SHORT_YEAR_FORMATS and not 1950 <= year <= 2049:
                    continue
                source = dates.render(day, name)[0]
                assert target_of.setdefault(source, day) == day, (source, name)
            day += datetime.timedelta(1)


def test_two_digit_years_only_for_1950_to_2049(corpus):
    for ex in corpus:
        year = ex["source"][slice(*ex["year_span"])]
        if len(year.lstrip("'")) == 2:
            assert 1950 <= int(ex["target"][:4]) <= 2049
    with pytest.raises(ValueError):
        dates.render(datetime.date(1949, 12, 31), "en_us_m_d_yy")


def test_variety(corpus):
    formats = {ex["format"] for ex in corpus}
    assert formats == set(dates.FORMATS) and len(formats) >= 25
    assert {ex["lang"] for ex in corpus} >= {"en", "fr", "de", "es"}
    for split in ("validation", "test"):  # every format appears in every split
        assert {ex["format"] for ex in corpus if dates.split_of(
            datetime.date.fromisoformat(ex["target"])) == split} == set(dates.FORMATS)
    lengths = [len(ex["source"]) for ex in corpus]
    assert min(lengths) <= 8 and max(lengths) >= 35
    # Format choice is uniform: each format within 20% of its expected share (~5 sigma).
    counts = Counter(ex["format"] for ex in corpus)
    expected = len(corpus) / len(dates.FORMATS)
    assert all(0.8 * expected < counts[name] < 1.2 * expected for name in dates.FORMATS), counts


def test_unknown_split_and_bad_size():
    with pytest.raises(ValueError, match="train, validation, test"):
        dates.generate("dev", 10)
    with pytest.raises(ValueError):
        dates.generate("train", -1)
    assert dates.generate("test", 0) == []

