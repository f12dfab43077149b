"""Hypothesis strategies that take a real sample (a fixture) and break it the ways the world breaks input.

A parser meets real output far more often than noise, and its bugs hide one step away from
real output: a number that is too big, a line cut short, a section listed twice, a nesting the
tool never printed. So each strategy starts from a real sample and applies a few mutations:
byte flips, line deletions, duplications and swaps, truncation, numbers replaced by huge,
negative, NaN, infinite or out-of-range values, very long lines and fields, random unicode,
CRLF line ends and, for JSON, values replaced by deep nesting or the wrong type. Pure random
text is drawn too. Sizes are bounded (each mutation adds at most about 300 KB, a JSON document
stays under 600 KB) so that a linear parser stays well inside the per-input time limit and a
quadratic one does not.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

# What a number in real output gets replaced by: past every integer width, past float range,
# negative where only counts make sense, the spellings float() and json accept for NaN and
# infinity, digits int() reads but str.isdigit() judges otherwise, and past Python's 4300-digit
# int-string limit.
NUMBERS = (
    "9" * 5000, "1" + "0" * 400, "-1", "-0", "0", "0.0", "1e400", "-1e400", "1e-400", "NaN", "nan", "inf",
    "-inf", "Infinity", "-Infinity", "4294967295", "4294967296", "18446744073709551615", "18446744073709551616",
    "-9223372036854775809", "99999999999999999999999", "1.7976931348623157e309", "0x7fffffff", "0x", "1_000",
    "²", "١٢٣", "+5", " 7", "1.5", "1,5", "",
)
# JSON values a field of the wrong type or an absurd value takes.
JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**64, 10**400, -(10**400), 1.5, float("inf"), float("-inf"), float("nan"), "",
    "-", "N/A", "garbage", "9" * 400, [], {}, [None], {"": None}, [[[]]],
)
NESTING = (2, 10, 100, 500, 900, 990, 1000, 1100, 5000, 100_000)
LONG = (100, 1000, 10_000, 65_536)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
T = TypeVar("T")
_PLACEHOLDER = "\x00nested\x00"
_MAX_JSON = 600_000

# Strategies are built once: building one per draw costs more than the draw. Positions are drawn as a number taken
# modulo the length, for the same reason.
# Characters of any script, no lone surrogates: what `bytes.decode(errors="replace")` can hand a parser.
_CHARS = st.characters(exclude_categories=("Cs",))
_CHAR = st.one_of(st.characters(min_codepoint=0, max_codepoint=127), _CHARS)
_INSERTED = st.text(_CHARS, max_size=40)
_INDEX = st.integers(0, 2**31 - 1)
_SPAN = st.integers(1, 200)
_TIMES = st.sampled_from((1, 2, 10, 1000))
_REPLACEMENT = st.sampled_from(NUMBERS)
_PIECE = st.one_of(
    st.sampled_from(("A", "9", " ", "\t", "[", "]", "{", "(", ",", "|", ":", "'", '"', "\\", "[x", "a, ", "=", "#", ".",
                     "%")),
    st.text(_CHARS, min_size=1, max_size=4),
)
_LONG = st.sampled_from(LONG)
_DEPTH = st.sampled_from(NESTING)
_BRACKETS = st.sampled_from((("[", "]"), ('{"a":', "}"), ("(", ")")))
_BOOL = st.booleans()
_LINE_END = st.sampled_from(("\r\n", "\r", "\n\n", "\x00\n", "\x0b"))
_COUNT = st.integers(1, 4)
_ONE_IN_FOUR = st.integers(0, 3)
_ONE_IN_TEN = st.integers(0, 9)
_ONE_IN_TWENTY = st.integers(0, 19)
_JSON_ACTION = st.integers(0, 4)
_JSON_VALUE = st.sampled_from(JSON_VALUES)
_RANDOM_BYTES = st.binary(max_size=500)


def _at(draw: Callable[..., Any], size: int) -> int:
    """A position in 0..size-1 (0 when size is 0)."""
    return int(draw(_INDEX)) % size if size > 0 else 0


def pick(draw: Callable[..., Any], options: Sequence[T]) -> T:
    """One of `options` (not empty)."""
    return options[_at(draw, len(options))]


def coin(draw: Callable[..., Any]) -> bool:
    return bool(draw(_BOOL))


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True) or [text]


def _flip(draw: Callable[..., Any], text: str) -> str:
    at = _at(draw, len(text))
    return text[:at] + draw(_CHAR) + text[at + 1 :]


def _insert(draw: Callable[..., Any], text: str) -> str:
    at = _at(draw, len(text) + 1)
    return text[:at] + draw(_INSERTED) + text[at:]


def _delete_span(draw: Callable[..., Any], text: str) -> str:
    at = _at(draw, len(text) + 1)
    return text[:at] + text[at + draw(_SPAN) :]


def _truncate(draw: Callable[..., Any], text: str) -> str:
    return text[: _at(draw, len(text) + 1)]


def _delete_line(draw: Callable[..., Any], text: str) -> str:
    lines = _lines(text)
    del lines[_at(draw, len(lines))]
    return "".join(lines)


def _duplicate_line(draw: Callable[..., Any], text: str) -> str:
    lines = _lines(text)
    at = _at(draw, len(lines))
    line = lines[at] if lines[at].endswith("\n") else lines[at] + "\n"
    times = draw(_TIMES)
    if len(line) * times > 300_000:
        return text
    lines[at:at] = [line] * times
    return "".join(lines)


def _swap_lines(draw: Callable[..., Any], text: str) -> str:
    lines = _lines(text)
    first, second = _at(draw, len(lines)), _at(draw, len(lines))
    lines[first], lines[second] = lines[second], lines[first]
    return "".join(lines)


def _number(draw: Callable[..., Any], text: str) -> str:
    found = [m.span() for _, m in zip(range(2000), _NUMBER.finditer(text), strict=False)]
    if not found:
        return _insert(draw, text)
    start, end = found[_at(draw, len(found))]
    return text[:start] + draw(_REPLACEMENT) + text[end:]


def _long_run(draw: Callable[..., Any], text: str) -> str:
    """A very long field: one character, or a short piece (brackets, separators), repeated in place."""
    at = _at(draw, len(text) + 1)
    piece = draw(_PIECE)
    return text[:at] + piece * (draw(_LONG) // len(piece)) + text[at:]


def _nest(draw: Callable[..., Any], text: str) -> str:
    """Brackets opened (and maybe closed) many levels deep, where a value or the whole text was."""
    depth = draw(_DEPTH)
    opener, closer = draw(_BRACKETS)
    inner = opener * depth + (closer * depth if draw(_BOOL) else "")
    if draw(_BOOL):
        return inner + text
    at = _at(draw, len(text) + 1)
    return text[:at] + inner + text[at:]


def _crlf(draw: Callable[..., Any], text: str) -> str:
    return text.replace("\n", draw(_LINE_END))


TEXT_MUTATIONS: tuple[Callable[[Callable[..., Any], str], str], ...] = (
    _flip, _insert, _delete_span, _truncate, _delete_line, _duplicate_line, _swap_lines, _number, _number,
    _long_run, _nest, _crlf,
)
_MUTATION = st.sampled_from(TEXT_MUTATIONS)


def mutate_text(draw: Callable[..., Any], text: str) -> str:
    """`text` after one to four mutations."""
    for _ in range(draw(_COUNT)):
        text = draw(_MUTATION)(draw, text)
    return text


_RANDOM_TEXT = st.one_of(
    st.text(_CHARS, max_size=500),
    st.text(st.sampled_from(" \t\n:|,;=[](){}\"'#/-_.%0123456789abcdefxyzABCDEFXYZ"), max_size=500),
)


def random_text() -> st.SearchStrategy[str]:
    """Noise: any characters, or only those that make up the structure of the formats here."""
    return _RANDOM_TEXT


@st.composite
def texts(draw: Callable[..., Any], samples: Sequence[str]) -> str:
    """A mutated real sample most of the time, pure random text otherwise."""
    if not samples or draw(_ONE_IN_TEN) == 0:
        return str(draw(_RANDOM_TEXT))
    return mutate_text(draw, samples[_at(draw, len(samples))])


def _json_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every node of a JSON document, iteratively (a fixture is shallow, but be safe)."""
    found, todo = [], [(value, path)]
    while todo and len(found) < 5000:
        node, here = todo.pop()
        found.append(here)
        if isinstance(node, dict):
            todo.extend((child, (*here, key)) for key, child in node.items())
        elif isinstance(node, list):
            todo.extend((child, (*here, index)) for index, child in enumerate(node))
    return found


def _json_replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = document
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return document


def _json_mutation(draw: Callable[..., Any], document: Any, nested: list[str]) -> Any:
    """One change to a JSON document: a value replaced (by a wrong type, an absurd number, text or a placeholder for
    deep nesting, which is spliced in as text later since serialising it would recurse), a key or item deleted, or a
    list grown."""
    paths = _json_paths(document)
    path = paths[_at(draw, len(paths))]
    action = draw(_JSON_ACTION)
    if action == 0:
        return _json_replace(document, path, copy.deepcopy(draw(_JSON_VALUE)))
    if action == 1:
        depth = draw(_DEPTH)
        nested.append("[" * depth + "]" * depth if draw(_BOOL) else '{"a":' * depth + "0" + "}" * depth)
        return _json_replace(document, path, _PLACEHOLDER + str(len(nested) - 1))
    if action == 4:
        return _json_replace(document, path, draw(_INSERTED))
    node, parent = document, None
    for step in path:
        parent, node = node, node[step]
    if action == 2 and parent is not None:
        del parent[path[-1]]
    elif action == 3 and isinstance(node, list) and node:
        times = draw(_TIMES)
        if len(json.dumps(node[0])) * times < 300_000:
            node.extend([node[0]] * times)
    return document


@st.composite
def json_texts(draw: Callable[..., Any], samples: Sequence[str]) -> str:
    """A real JSON sample after one to four changes to its values (see _json_mutation) and, sometimes, text
    mutations on top. Pure random text now and then."""
    if not samples or draw(_ONE_IN_TWENTY) == 0:
        return str(draw(_RANDOM_TEXT))
    sample = samples[_at(draw, len(samples))]
    document = json.loads(sample)
    nested: list[str] = []
    for _ in range(draw(_COUNT)):
        document = _json_mutation(draw, document, nested)
    text = json.dumps(document, ensure_ascii=draw(_BOOL))
    for index, splice in enumerate(nested):  # once each: a placeholder copied into a grown list stays a string
        text = text.replace(json.dumps(_PLACEHOLDER + str(index)), splice, 1)
    if len(text) > _MAX_JSON:  # lists grown inside grown lists: past any real output, and past the time limit
        text = sample
    if draw(_ONE_IN_FOUR) == 0:
        text = mutate_text(draw, text)
    return text


@st.composite
def file_maps(draw: Callable[..., Any], samples: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """A directory's {file name: text} with one to three files mutated, dropped, or added."""
    files = dict(samples[_at(draw, len(samples))])
    names = sorted({name for sample in samples for name in sample})
    for _ in range(draw(_COUNT)):
        action = draw(_ONE_IN_FOUR)
        present = sorted(files)
        if action <= 1 and files:
            name = present[_at(draw, len(present))]
            files[name] = mutate_text(draw, files[name])
        elif action == 2 and files:
            del files[present[_at(draw, len(present))]]
        else:
            name = names[_at(draw, len(names))] if names and draw(_BOOL) else draw(_INSERTED)
            files[name] = draw(_REPLACEMENT) if draw(_BOOL) else draw(_INSERTED)
    return files


def mutate_bytes(draw: Callable[..., Any], data: bytes) -> bytes:
    """`data` after text mutations on its Latin-1 reading, written back byte for byte where it can be."""
    return _latin1(mutate_text(draw, data.decode("latin-1")))


def _latin1(text: str) -> bytes:
    """Text read as Latin-1 back to its bytes; UTF-8 where a mutation put in a character Latin-1 has not."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="surrogatepass")


@st.composite
def byte_strings(draw: Callable[..., Any], samples: Sequence[bytes]) -> bytes:
    if not samples or draw(_ONE_IN_TEN) == 0:
        return bytes(draw(_RANDOM_BYTES))
    return mutate_bytes(draw, samples[_at(draw, len(samples))])


# ---------------------------------------------------------------- variants: more inputs per drawn example
#
# Drawing through Hypothesis costs about a millisecond an example, far more than most parsers take, so each
# drawn input is tried together with a few variants of it, made by plain random.Random from a drawn seed:
# Hypothesis still chooses (and on a failure shrinks) both the input and the seed.

_CHEAP_CHARS = "\x00\t\n\r :;,|=[](){}\"'\\#%-+.0123456789aZé€\u2028\ufeff\U0001f4a9"
_CHEAP_PIECES = ("[", "{", "(", "9", " ", ",", "|", ":", "a, ", "'", '"', "\\", "\t", "%", "=")


def _cheap_char(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + rng.choice(_CHEAP_CHARS) + text[at + 1 :]


def _cheap_cut(text: str, rng: random.Random) -> str:
    return text[: rng.randrange(len(text) + 1)]


def _cheap_lines(text: str, rng: random.Random) -> str:
    """A line dropped, or repeated 2 to 1000 times."""
    lines = _lines(text)
    at = rng.randrange(len(lines))
    times = rng.choice((0, 2, 10, 1000))
    if len(lines[at]) * times > 300_000:
        return text
    return "".join([*lines[:at], *[lines[at]] * times, *lines[at + 1 :]])


def _cheap_number(text: str, rng: random.Random) -> str:
    found = [m.span() for _, m in zip(range(2000), _NUMBER.finditer(text), strict=False)]
    start, end = rng.choice(found) if found else (0, 0)
    return text[:start] + rng.choice(NUMBERS) + text[end:]


def _cheap_run(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    piece = rng.choice(_CHEAP_PIECES)
    return text[:at] + piece * (rng.choice(LONG + NESTING[-1:]) // len(piece)) + text[at:]


def _cheap_line_ends(text: str, rng: random.Random) -> str:
    return text.replace("\n", rng.choice(("\r\n", "\r", "")))


_CHEAP_MUTATIONS = (_cheap_char, _cheap_cut, _cheap_lines, _cheap_number, _cheap_run, _cheap_line_ends)


def _vary(value: object, rng: random.Random) -> object:
    """`value` after one or two cheap mutations: of the text, of one file of a directory, of one line of a list."""
    if isinstance(value, str):
        for _ in range(rng.randrange(1, 3)):
            value = rng.choice(_CHEAP_MUTATIONS)(value, rng)
        return value
    if isinstance(value, bytes):
        return _latin1(str(_vary(value.decode("latin-1"), rng)))
    if isinstance(value, dict) and value:
        varied = dict(value)
        key = rng.choice(sorted(varied, key=str))
        varied[key] = _vary(varied[key], rng)
        return varied
    if isinstance(value, list) and value:
        varied_list = list(value)
        index = rng.randrange(len(varied_list))
        varied_list[index] = _vary(varied_list[index], rng)
        return varied_list
    return value


def variants(args: tuple[object, ...], seed: int, count: int, size: Callable[[object], int]
             ) -> list[tuple[object, ...]]:
    """`count` inputs near `args`: its largest part (by `size`) varied, from `seed`."""
    if not args:
        return []
    rng = random.Random(seed)
    at = max(range(len(args)), key=lambda i: size(args[i]))
    return [(*args[:at], _vary(args[at], rng), *args[at + 1 :]) for _ in range(count)]
