"""A built-in, deterministic corpus of human-written dates -> ISO 8601 dates.

Each example turns a calendar date into one of several dozen written forms in English, French,
German or Spanish ("Saturday, the 4th of July, 1998", "4.7.98", "sábado, 4 de julio de 1998")
and asks for "1998-07-04". It is small enough to train an attentional RNN to near-perfect
accuracy in minutes, has long inputs that show where a model without attention breaks down,
and records which characters of the source gave the year, the month and the day, so learned
alignments can be scored. Splits are held out by calendar date (a test date never appears in
training, in any form), every source string maps to exactly one target (no day-first and
month-first numeric forms share a separator; two-digit years only stand for 1950..2049), and
everything is a pure function of (split, size, seed).
"""

import datetime
import functools
import re
import zlib

from s2s.data import SPLITS, split_stream

__all__ = ["SPLITS", "LANGS", "FORMATS", "generate", "iterate", "render", "split_of"]

LANGS = ("en", "fr", "de", "es", "iso")

MONTHS = {
    "en": "January February March April May June July August September October November December",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre"
    " diciembre",
}
MONTH_ABBRS = {
    "en": "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec",
    "fr": "janv. févr. mars avr. mai juin juil. août sept. oct. nov. déc.",
    "de": "Jan. Feb. März Apr. Mai Juni Juli Aug. Sept. Okt. Nov. Dez.",
    "es": "ene feb mar abr may jun jul ago sept oct nov dic",
}
WEEKDAYS = {  # Monday first, as datetime.date.weekday() counts
    "en": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
    "fr": "lundi mardi mercredi jeudi vendredi samedi dimanche",
    "de": "Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag",
    "es": "lunes martes miércoles jueves viernes sábado domingo",
}
WEEKDAY_ABBRS = {
    "en": "Mon Tue Wed Thu Fri Sat Sun",
    "de": "Mo. Di. Mi. Do. Fr. Sa. So.",
}
MONTHS, MONTH_ABBRS, WEEKDAYS, WEEKDAY_ABBRS = (
    {lang: tuple(names.split()) for lang, names in table.items()}
    for table in (MONTHS, MONTH_ABBRS, WEEKDAYS, WEEKDAY_ABBRS)
)

_UNITS = "first second third fourth fifth sixth seventh eighth ninth".split()
ORDINAL_WORDS = tuple(  # ORDINAL_WORDS[d - 1] spells day d: "first" .. "thirty-first"
    _UNITS
    + "tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth".split()
    + "eighteenth nineteenth twentieth".split()
    + ["twenty-" + unit for unit in _UNITS]
    + ["thirtieth", "thirty-first"]
)


def _ordinal(day):
    suffix = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


# Template fields: name -> (span it fills or None, text for (date, lang)).
_FIELDS = {
    "year": ("year", lambda d, lang: str(d.year)),
    "yy": ("year", lambda d, lang: f"{d.year % 100:02d}"),
    "'yy": ("year", lambda d, lang: f"'{d.year % 100:02d}"),
    "m": ("month", lambda d, lang: str(d.month)),
    "mm": ("month", lambda d, lang: f"{d.month:02d}"),
    "month": ("month", lambda d, lang: MONTHS[lang][d.month - 1]),
    "mon": ("month", lambda d, lang: MONTH_ABBRS[lang][d.month - 1]),
    "d": ("day", lambda d, lang: "1er" if lang == "fr" and d.day == 1 else str(d.day)),
    "dd": ("day", lambda d, lang: f"{d.day:02d}"),
    "dth": ("day", lambda d, lang: _ordinal(d.day)),
    "dword": ("day", lambda d, lang: ORDINAL_WORDS[d.day - 1]),
    "weekday": (None, lambda d, lang: WEEKDAYS[lang][d.weekday()]),
    "wd": (None, lambda d, lang: WEEKDAY_ABBRS[lang][d.weekday()]),
}

# name -> (lang, template). Names ending in "_upper" are upper-cased throughout.
FORMATS = {
    "en_d_month_y": ("en", "{d} {month} {year}"),
    "en_d_mon_y": ("en", "{d} {mon} {year}"),
    "en_d_mon_y_dash": ("en", "{d}-{mon}-{year}"),
    "en_month_d_y": ("en", "{month} {d}, {year}"),
    "en_month_dth_y": ("en", "{month} {dth}, {year}"),
    "en_mon_d_y": ("en", "{mon} {d} {year}"),
    "en_weekday_month_d_y": ("en", "{weekday}, {month} {d}, {year}"),
    "en_wd_d_mon_y": ("en", "{wd}, {d} {mon} {year}"),
    "en_dth_of_month_yy": ("en", "{dth} of {month} {'yy}"),
    "en_the_dword_of_month_y": ("en", "the {dword} of {month}, {year}"),
    "en_weekday_the_dth_of_month_y": ("en", "{weekday}, the {dth} of {month}, {year}"),
    "en_weekday_the_dword_of_month_y": ("en", "{weekday}, the {dword} of {month}, {year}"),
    "en_us_m_d_yy": ("en", "{m}/{d}/{yy}"),
    "en_us_mm_dd_yy": ("en", "{mm}/{dd}/{yy}"),
    "en_us_m_d_y": ("en", "{m}/{d}/{year}"),
    "en_us_mm_dd_y": ("en", "{mm}/{dd}/{year}"),
    "en_d_month_y_upper": ("en", "{d} {month} {year}"),
    "en_wd_d_mon_y_upper": ("en", "{wd}, {d} {mon} {year}"),
    "en_dd_mon_y_dash_upper": ("en", "{dd}-{mon}-{year}"),
    "fr_d_month_y": ("fr", "{d} {month} {year}"),
    "fr_d_mon_y": ("fr", "{d} {mon} {year}"),
    "fr_le_d_month_y": ("fr", "le {d} {month} {year}"),
    "fr_weekday_d_month_y": ("fr", "{weekday} {d} {month} {year}"),
    "fr_le_weekday_d_month_y": ("fr", "le {weekday} {d} {month} {year}"),
    "de_d_month_y": ("de", "{d}. {month} {year}"),
    "de_d_mon_y": ("de", "{d}. {mon} {year}"),
    "de_am_d_month_y": ("de", "am {d}. {month} {year}"),
    "de_weekday_d_month_y": ("de", "{weekday}, {d}. {month} {year}"),
    "de_wd_d_month_y": ("de", "{wd}, {d}. {month} {year}"),
    "de_dd_mm_y": ("de", "{dd}.{mm}.{year}"),
    "de_d_m_y": ("de", "{d}.{m}.{year}"),
    "de_d_m_yy": ("de", "{d}.{m}.{yy}"),
    "es_d_de_month_de_y": ("es", "{d} de {month} de {year}"),
    "es_el_d_de_month_de_y": ("es", "el {d} de {month} de {year}"),
    "es_weekday_d_de_month_de_y": ("es", "{weekday}, {d} de {month} de {year}"),
    "es_d_mon_y": ("es", "{d} {mon} {year}"),
    "iso_y_mm_dd_slash": ("iso", "{year}/{mm}/{dd}"),
    "iso_y_mm_dd_dot": ("iso", "{year}.{mm}.{dd}"),
}

_FIRST, _LAST = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
_SHORT_YEARS = range(1950, 2050)  # the only years a two-digit year may stand for


# Each template split into literals (even positions) and field names (odd positions).
_PARTS = {name: tuple(re.split(r"\{([^}]+)\}", tpl)) for name, (_, tpl) in FORMATS.items()}
_SHORT_YEAR_FORMATS = frozenset(
    name for name, parts in _PARTS.items() if {"yy", "'yy"} & set(parts[1::2])
)


def render(date, name):
    """Write `date` in format `name`; return (source, {"year_span": [s, e], ...}).

    The spans are recorded while the pieces are joined, so "04.04.2004" gets them right.
    """
    lang, upper = FORMATS[name][0], name.endswith("_upper")
    if name in _SHORT_YEAR_FORMATS and date.year not in _SHORT_YEARS:
        raise ValueError(f"format {name!r} writes two-digit years, so only years 1950..2049")
    pieces, spans, length = [], {}, 0
    for i, part in enumerate(_PARTS[name]):
        role = None
        if i % 2:
            role, text_of = _FIELDS[part]
            part = text_of(date, lang)
        if upper:
            part = part.upper()
        if role:
            spans[role + "_span"] = [length, length + len(part)]
        pieces.append(part)
        length += len(part)
    return "".join(pieces), spans


def split_of(date):
    """The split a calendar date belongs to: ~90% train, 5% validation, 5% test."""
    bucket = zlib.crc32(date.isoformat().encode("ascii")) % 100
    return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


@functools.lru_cache(maxsize=None)
def _dates(split, short_years):
    """All dates of `split` (in 1950..2049 only if `short_years`), in calendar order.

    Picking uniformly from this list is the same as drawing uniformly from 1900..2099 and
    rejecting dates of other splits, only faster.
    """
    days = (_FIRST + datetime.timedelta(n) for n in range((_LAST - _FIRST).days + 1))
    return tuple(
        d for d in days if split_of(d) == split and (not short_years or d.year in _SHORT_YEARS)
    )


def generate(split: str, size: int, seed: int = 0) -> list[dict]:
    """`size` examples for split "train" | "validation" | "test", a pure function of its arguments.

    Each example picks a format uniformly, then a date of the split uniformly (among years
    1950..2049 when the format writes a two-digit year), and returns a dict with "source",
    "target" (ISO 8601), half-open "year_span", "month_span", "day_span" into the source,
    "format" and "lang".
    """
    return list(iterate(split, size, seed))


def iterate(split: str, size: int, seed: int = 0):
    """The examples of `generate`, one at a time (a corpus of millions never sits in a list)."""
    rng = split_stream("dates", split, size, seed)
    names = list(FORMATS)
    for _ in range(size):
        name = rng.choice(names)
        date = rng.choice(_dates(split, name in _SHORT_YEAR_FORMATS))
        source, spans = render(date, name)
        yield {
            "source": source, "target": date.isoformat(), "year_span": spans["year_span"],
            "month_span": spans["month_span"], "day_span": spans["day_span"],
            "format": name, "lang": FORMATS[name][0],
        }
