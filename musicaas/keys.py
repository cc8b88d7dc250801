"""Keys and modes: parsing, spelling and pitch-class arithmetic.

A key is a tonic pitch class (0 = C … 11 = B) and a mode (``"major"`` or ``"minor"``).
Tonics are spelled the way key signatures spell them (Db major, not C# major; C# minor,
not Db minor), with ``F#`` for the six-sharp/six-flat major and ``Eb``/``Bb`` minor.
"""

from __future__ import annotations

from dataclasses import dataclass

from musicaas.runtime.errors import InvalidArgument

MODES = ("major", "minor")

#: Conventional tonic spellings, indexed by pitch class.
MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")

_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def tonic_pitch_class(name: str) -> int:
    """Pitch class (0-11) of a tonic name such as ``"F#"``, ``"Bb"``, ``"b-"`` (music21), ``"C♯"``.

    Raises
    ------
    InvalidArgument
        When ``name`` is not a letter A-G followed by sharps or flats.
    """
    text = name.strip().replace("♯", "#").replace("♭", "b")
    if not text or text[0].upper() not in _LETTER_PC:
        raise InvalidArgument(f"unknown tonic {name!r}: expected a letter A-G with optional # or b")
    pc = _LETTER_PC[text[0].upper()]
    for ch in text[1:]:
        if ch == "#":
            pc += 1
        elif ch in ("b", "-"):
            pc -= 1
        else:
            raise InvalidArgument(f"unknown tonic {name!r}: expected a letter A-G with optional # or b")
    return pc % 12


@dataclass(frozen=True)
class Key:
    """A musical key.

    Attributes
    ----------
    tonic_pc : int in [0, 11]
        Pitch class of the tonic, 0 = C.
    mode : str
        ``"major"`` or ``"minor"``.
    """

    tonic_pc: int
    mode: str

    def __post_init__(self) -> None:
        if not 0 <= self.tonic_pc <= 11:
            raise InvalidArgument(f"tonic pitch class {self.tonic_pc} out of range [0, 11]")
        if self.mode not in MODES:
            raise InvalidArgument(f"unknown mode {self.mode!r}: expected 'major' or 'minor'")

    @property
    def tonic(self) -> str:
        """Conventional spelling of the tonic (``"Bb"``, ``"F#"``)."""
        return (MAJOR_TONICS if self.mode == "major" else MINOR_TONICS)[self.tonic_pc]

    @property
    def index(self) -> int:
        """0-23: 0-11 major keys C..B, 12-23 minor keys C..B."""
        return self.tonic_pc + (0 if self.mode == "major" else 12)

    @classmethod
    def from_index(cls, index: int) -> "Key":
        """The key with :attr:`index` ``index`` (0-11 major C..B, 12-23 minor C..B). Raises InvalidArgument outside [0, 23]."""
        if not 0 <= index < 24:
            raise InvalidArgument(f"key index {index} out of range [0, 23]")
        return cls(index % 12, "major" if index < 12 else "minor")

    @classmethod
    def parse(cls, text: str) -> "Key":
        """Parse ``"D minor"``, ``"F# major"``, ``"Bb"`` (major), ``"c#m"``, ``"a-"`` (music21 minor).

        Raises
        ------
        InvalidArgument
            When the text names no key; the message quotes it.
        """
        raw = text.strip()
        if not raw:
            raise InvalidArgument("empty key name: expected e.g. 'D minor'")
        parts = raw.split()
        if len(parts) == 2:
            tonic, mode = parts[0], parts[1].lower()
            if mode in ("maj", "major"):
                mode = "major"
            elif mode in ("min", "minor", "m"):
                mode = "minor"
            else:
                raise InvalidArgument(f"unknown key {text!r}: mode must be 'major' or 'minor'")
            return cls(tonic_pitch_class(tonic), mode)
        if len(parts) == 1:
            token = parts[0]
            if token.endswith("m") and len(token) >= 2:
                return cls(tonic_pitch_class(token[:-1]), "minor")
            mode = "minor" if token[0].islower() else "major"
            return cls(tonic_pitch_class(token), mode)
        raise InvalidArgument(f"unknown key {text!r}: expected '<tonic> major|minor', e.g. 'D minor'")

    def transpose(self, semitones: int) -> "Key":
        """The same mode with the tonic moved by ``semitones`` (any integer, modulo 12)."""
        return Key((self.tonic_pc + semitones) % 12, self.mode)

    def __str__(self) -> str:
        return f"{self.tonic} {self.mode}"


ALL_KEYS = tuple(Key.from_index(i) for i in range(24))
