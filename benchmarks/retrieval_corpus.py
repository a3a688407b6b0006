"""A generated evaluation corpus for retrieval: look-alike product manuals as PDFs, questions whose
answers are exact phrases, and new versions that change facts.

Deterministic: the same ``seed`` always gives the same bytes, questions and versions, so nothing
of it needs to live in the repository. Used by ``benchmarks/retrieval.py`` (hit@k, MRR) and by
the end-to-end answer benchmark; import it as a module from this folder::

    from retrieval_corpus import make_corpus
    corpus = make_corpus(seed=7, products=24)
    corpus.write(folder)                      # <folder>/v1/*.pdf and <folder>/v2/*.pdf
    for q in corpus.questions: q.question, q.manual, q.phrase, q.kind

What makes it hard on purpose (the failure modes seen in the outside evaluation):

* every manual is about the same kind of appliance (one shared vocabulary, the same section
  headings, the same sentence templates); they differ in brand, model number, figures and units;
* the product name is in the title, on the cover line and in a running page header (which the
  normaliser strips), but most fact sentences say "the unit" or "the appliance": a chunk only
  knows which product it belongs to when the title travels with it;
* section headings are title case (``Power``, ``Service``), not numbered or ALL CAPS;
* each short fact sentence sits next to a long paragraph of unrelated boilerplate, and the
  introduction repeats the product name many times;
* about half the questions are paraphrased ("how long does the battery last on one charge"
  against "on a full charge the unit runs for 7.5 hours");
* version 2 of some manuals changes the warranty and the battery figures; ``changed`` lists the
  questions whose answer changed with the old and the new phrase.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from avatarstack.testkit.pdf import build_pdf
from avatarstack.testkit.pdf import stream as pdf_stream

BRANDS = (
    "Halvard",
    "Norvik",
    "Brennar",
    "Ostmark",
    "Velund",
    "Torsby",
    "Kallio",
    "Ardent",
)
SERIES = ("T", "R", "X", "K", "Z", "M")
FAMILY = "cordless vacuum cleaner"
HEADINGS = (
    "Overview",
    "Safety",
    "Power",
    "Operation",
    "Cleaning",
    "Service",
    "Warranty",
    "Specifications",
)
FILLER = [
    "the",
    "appliance",
    "is",
    "designed",
    "for",
    "domestic",
    "use",
    "on",
    "hard",
    "floors",
    "carpets",
    "and",
    "rugs",
    "and",
    "must",
    "be",
    "kept",
    "away",
    "from",
    "water",
    "heat",
    "sources",
    "and",
    "open",
    "flames",
    "always",
    "read",
    "these",
    "instructions",
    "before",
    "first",
    "use",
    "and",
    "keep",
    "them",
    "for",
    "later",
    "reference",
    "the",
    "manufacturer",
    "accepts",
    "no",
    "liability",
    "for",
    "damage",
    "caused",
    "by",
    "improper",
    "use",
    "children",
    "must",
    "not",
    "play",
    "with",
    "the",
    "appliance",
    "cleaning",
    "and",
    "user",
    "maintenance",
    "shall",
    "not",
    "be",
    "made",
    "by",
    "children",
    "without",
    "supervision",
    "use",
    "only",
    "accessories",
    "and",
    "spare",
    "parts",
    "supplied",
    "or",
    "recommended",
    "by",
    "the",
    "manufacturer",
    "switch",
    "the",
    "appliance",
    "off",
    "before",
    "you",
    "attach",
    "or",
    "remove",
    "an",
    "accessory",
    "do",
    "not",
    "use",
    "the",
    "appliance",
    "to",
    "pick",
    "up",
    "sharp",
    "objects",
    "burning",
    "cigarettes",
    "ashes",
    "or",
    "liquids",
    "store",
    "the",
    "appliance",
    "indoors",
    "in",
    "a",
    "dry",
    "place",
    "the",
    "packaging",
    "materials",
    "can",
    "be",
    "recycled",
    "dispose",
    "of",
    "them",
    "in",
    "an",
    "environmentally",
    "friendly",
    "manner",
    "check",
    "the",
    "filter",
    "and",
    "the",
    "brush",
    "roll",
    "regularly",
    "a",
    "blocked",
    "airway",
    "reduces",
    "the",
    "suction",
    "power",
    "and",
    "the",
    "running",
    "time",
]


@dataclass(frozen=True)
class Fact:
    """One figure of a manual: its section, the sentence stating it, the answer phrase in that
    sentence, and three ways to ask for it: direct wording, a paraphrase, and an *unseen*
    paraphrase written after avatarstack's related-terms table, never tuned against (the
    ``--unseen`` runs of ``retrieval.py`` and ``answers.py`` ask it instead of the paraphrase)."""

    key: str
    section: str
    sentence: str
    phrase: str
    direct: str
    paraphrase: str
    unseen: str


@dataclass(frozen=True)
class Manual:
    name: str  # file name, e.g. ``halvard-t142-v1.pdf``
    product: str  # ``Halvard T142``
    title: str
    version: int
    facts: dict[str, Fact]
    pdf: bytes
    #: the normalised-ish plain text of the body (what a parser should extract), for checks
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    product: str
    manual: str  # file stem of the version-1 manual (``halvard-t142``)
    phrase: str  # the exact answer phrase (the relevant chunk contains it)
    kind: str  # ``direct`` or ``paraphrase``
    fact: str


@dataclass(frozen=True)
class Change:
    """A question whose answer changes in version 2."""

    question: Question  # ``phrase`` is the new phrase
    old_phrase: str


@dataclass
class Corpus:
    seed: int
    manuals: list[Manual]  # version 1 of every product
    updates: list[Manual]  # version 2 of some products (same ``manual`` stem)
    questions: list[Question]
    changed: list[Change] = field(default_factory=list)

    def write(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """Write ``v1/<stem>.pdf`` and ``v2/<stem>.pdf``; returns both lists of paths."""
        paths: list[list[Path]] = [[], []]
        for n, manuals in enumerate((self.manuals, self.updates)):
            target = folder / f"v{n + 1}"
            target.mkdir(parents=True, exist_ok=True)
            for manual in manuals:
                path = target / f"{stem(manual)}.pdf"
                path.write_bytes(manual.pdf)
                paths[n].append(path)
        return paths[0], paths[1]


def stem(manual: Manual) -> str:
    return manual.product.lower().replace(" ", "-")


# --------------------------------------------------------------------------- facts


def _fmt(value: float) -> str:
    return f"{value:g}"


def _facts(rng: random.Random, product: str, version: int, base: dict[str, float]) -> list[Fact]:
    v = base
    runtime, charge, weight = _fmt(v["runtime"]), _fmt(v["charge"]), _fmt(v["weight"])
    power, voltage, warranty = _fmt(v["power"]), _fmt(v["voltage"]), _fmt(v["warranty"])
    dust, noise, interval = _fmt(v["dust"]), _fmt(v["noise"]), _fmt(v["interval"])
    cable, temp, suction = _fmt(v["cable"]), _fmt(v["temp"]), _fmt(v["suction"])
    subject = rng.choice(("the unit", "the appliance", "the cleaner"))
    return [
        Fact(
            "runtime",
            "Power",
            f"On a full charge {subject} runs for {runtime} hours in eco mode.",
            f"runs for {runtime} hours",
            f"How many hours does the {product} run on a full charge?",
            f"How long does the battery of the {product} last on one charge?",
            f"What battery life does the {product} have?",
        ),
        Fact(
            "charge",
            "Power",
            f"Charging an empty battery takes {charge} hours with the supplied adapter.",
            f"takes {charge} hours",
            f"How long does charging an empty battery of the {product} take?",
            f"How much time does the {product} need to recharge completely?",
            f"How long until the {product} battery is full again?",
        ),
        Fact(
            "voltage",
            "Power",
            f"The lithium-ion battery pack is rated at {voltage} V.",
            f"rated at {voltage} V",
            f"What voltage is the battery pack of the {product} rated at?",
            f"How many volts does the {product} battery have?",
            f"Which voltage does the lithium-ion pack of the {product} supply?",
        ),
        Fact(
            "power",
            "Specifications",
            f"Rated motor power: {power} W.",
            f"power: {power} W",
            f"What is the rated motor power of the {product}?",
            f"How many watts does the motor of the {product} draw?",
            f"How powerful is the motor of the {product}?",
        ),
        Fact(
            "weight",
            "Specifications",
            f"Net weight without accessories: {weight} kg.",
            f"accessories: {weight} kg",
            f"What is the net weight of the {product}?",
            f"How heavy is the {product} without its accessories?",
            f"What does the {product} weigh?",
        ),
        Fact(
            "noise",
            "Specifications",
            f"Sound power level in normal mode: {noise} dB(A).",
            f"normal mode: {noise} dB",
            f"What is the sound power level of the {product} in normal mode?",
            f"How loud is the {product} when it runs normally?",
            f"How much noise does the {product} make?",
        ),
        Fact(
            "dust",
            "Operation",
            f"Empty the dust container when it reaches the {dust} litre mark.",
            f"the {dust} litre mark",
            f"At which mark should the dust container of the {product} be emptied?",
            f"When is the bin of the {product} full enough to empty it?",
            f"How full may the dust container of the {product} get before I empty it?",
        ),
        Fact(
            "interval",
            "Cleaning",
            f"Wash the foam filter every {interval} weeks under cold running water.",
            f"every {interval} weeks",
            f"How often should the foam filter of the {product} be washed?",
            f"How frequently do I need to rinse the {product} filter?",
            f"How many weeks may pass between filter washes on the {product}?",
        ),
        Fact(
            "warranty",
            "Warranty",
            f"The manufacturer grants a warranty of {warranty} years from the date of purchase.",
            f"warranty of {warranty} years",
            f"How many years of warranty come with the {product}?",
            f"For how long is the {product} covered after I buy it?",
            f"What guarantee does the {product} come with?",
        ),
        Fact(
            "service",
            "Service",
            f"Have the motor inspected by an authorised service centre after {suction} "
            "operating hours.",
            f"after {suction} operating hours",
            f"After how many operating hours should the motor of the {product} be inspected?",
            f"When does the {product} need a motor check at a service centre?",
            f"When should the motor of the {product} be serviced?",
        ),
        Fact(
            "cable",
            "Power",
            f"The charging cable is {cable} m long.",
            f"is {cable} m long",
            f"How long is the charging cable of the {product}?",
            f"What length is the {product} charger lead?",
            f"How long is the power cord of the {product}?",
        ),
        Fact(
            "temp",
            "Safety",
            f"Charge the battery only at room temperatures between 10 and {temp} °C.",
            f"between 10 and {temp} °C",
            f"At what temperatures may the battery of the {product} be charged?",
            f"How warm may the room be when I charge the {product}?",
            f"What room temperature is needed to charge the {product}?",
        ),
    ]


def _figures(rng: random.Random) -> dict[str, float]:
    return {
        "runtime": rng.choice((0.5, 1, 1.5, 2)) + rng.randint(3, 9),
        "charge": rng.choice((2, 2.5, 3, 3.5, 4, 4.5, 5, 6)),
        "weight": round(rng.uniform(1.2, 4.8), 1),
        "power": rng.choice((250, 300, 350, 400, 450, 500, 550, 600, 650, 700)),
        "voltage": rng.choice((14.4, 18, 21.6, 25.2, 28.8, 32.4, 36)),
        "warranty": rng.choice((2, 3, 4, 5)),
        "dust": rng.choice((0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.2)),
        "noise": rng.randint(68, 84),
        "interval": rng.choice((2, 3, 4, 6, 8)),
        "cable": rng.choice((1.2, 1.5, 1.8, 2, 2.5, 3)),
        "temp": rng.choice((30, 35, 40, 45)),
        "suction": rng.choice((200, 250, 300, 400, 500, 600)),
    }


# --------------------------------------------------------------------------- text


def _filler(rng: random.Random, words: int, product: str, mentions: int) -> str:
    """Boilerplate sentences of the shared vocabulary; ``mentions`` of them name the product."""
    sentences: list[str] = []
    count = 0
    while count < words:
        size = rng.randint(9, 18)
        text = " ".join(rng.choice(FILLER) for _ in range(size))
        sentences.append(text[0].upper() + text[1:] + ".")
        count += size
    for _ in range(mentions):
        i = rng.randrange(len(sentences))
        sentences[i] = f"The {product} {sentences[i][0].lower()}{sentences[i][1:]}"
    return " ".join(sentences)


def _sections(rng: random.Random, product: str, facts: list[Fact]) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in manual order; every fact is its own short paragraph next to a
    long boilerplate paragraph."""
    by_section: dict[str, list[Fact]] = {}
    for fact in facts:
        by_section.setdefault(fact.section, []).append(fact)
    sections: list[tuple[str, list[str]]] = []
    for heading in HEADINGS:
        paragraphs: list[str] = []
        if heading == "Overview":
            paragraphs.append(
                f"Thank you for choosing the {product} {FAMILY}. "
                + _filler(rng, 90, product, mentions=4)
            )
        paragraphs.append(_filler(rng, rng.randint(90, 170), product, mentions=0))
        for fact in by_section.get(heading, []):
            paragraphs.insert(rng.randint(0, len(paragraphs)), fact.sentence)
        if rng.random() < 0.5:
            paragraphs.append(_filler(rng, rng.randint(40, 90), product, mentions=0))
        sections.append((heading, paragraphs))
    return sections


# --------------------------------------------------------------------------- PDF

_WIDTH = 92  # characters per line


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, _WIDTH, break_on_hyphens=False, break_long_words=False)


def _pdf(title: str, header: str, sections: list[tuple[str, list[str]]]) -> tuple[bytes, str]:
    """A Helvetica PDF: cover line, running header, headings in bold, wrapped paragraphs, page
    numbers. Returns the bytes and the plain body text."""
    pages: list[list[bytes]] = [[]]
    plain: list[str] = [title]
    y = 700

    def show(font: bytes, size: int, x: int, text: str, gap: int) -> None:
        nonlocal y
        if y < 90:
            pages.append([])
            y = 728
        pages[-1].append(b"BT /%s %d Tf %d %d Td %s Tj ET" % (font, size, x, y, _pdf_string(text)))
        y -= gap

    pages[0].append(b"BT /F2 16 Tf 72 740 Td %s Tj ET" % _pdf_string(title))
    for heading, paragraphs in sections:
        y -= 8
        show(b"F2", 12, 72, heading, 18)
        plain.append(heading)
        for paragraph in paragraphs:
            for line in _wrap(paragraph):
                show(b"F1", 10, 72, line, 13)
            y -= 8
            plain.append(paragraph)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    kids: list[bytes] = []
    for number, ops in enumerate(pages, start=1):
        frame = [
            b"BT /F1 8 Tf 72 765 Td %s Tj ET" % _pdf_string(header),
            *ops,
            b"BT /F1 9 Tf 290 34 Td %s Tj ET" % _pdf_string(f"Page {number} of {len(pages)}"),
        ]
        compressed = zlib.compress(b"\n".join(frame))
        page_object = len(objects) + 1
        kids.append(b"%d 0 R" % page_object)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>"
            % (page_object + 1)
        )
        objects.append(pdf_stream(compressed, b"/Filter /FlateDecode "))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    objects.append(b"<< /Title %s /Producer (avatarstack benchmarks) >>" % _pdf_string(title))
    return build_pdf(objects, info=len(objects)), "\n\n".join(plain)


# --------------------------------------------------------------------------- corpus


def _products(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        brand = BRANDS[len(names) % len(BRANDS)]
        series = rng.choice(SERIES)
        # siblings: the same brand and series with neighbouring numbers (T142, T143, T241…)
        model = f"{series}{rng.choice((1, 2, 3))}{rng.randint(0, 4)}{rng.randint(0, 9)}"
        if rng.random() < 0.25:
            model = model.lower()  # ``r114`` as some makers write it
        name = f"{brand} {model}"
        if name.lower() not in seen and model.lower() not in {n.split()[1].lower() for n in names}:
            seen.add(name.lower())
            names.append(name)
    return names


def _manual(rng: random.Random, product: str, version: int, figures: dict[str, float]) -> Manual:
    facts = _facts(rng, product, version, figures)
    title = f"{product} {FAMILY} - user manual" + (f" (revision {version})" if version > 1 else "")
    header = f"{product} · instructions for use"
    pdf, text = _pdf(title, header, _sections(rng, product, facts))
    name = f"{product.lower().replace(' ', '-')}-v{version}.pdf"
    return Manual(name, product, title, version, {f.key: f for f in facts}, pdf, text)


def make_corpus(
    seed: int = 7,
    products: int = 24,
    questions_per_manual: int = 10,
    updated: int = 8,
    *,
    unseen: bool = False,
) -> Corpus:
    """``products`` manuals (≥ 20 by default 24), ``questions_per_manual`` questions each (half
    paraphrased; with ``unseen``, in the wording nothing was tuned against), and version 2 of
    ``updated`` manuals with new warranty and runtime figures."""
    rng = random.Random(seed)
    names = _products(rng, products)
    manuals: list[Manual] = []
    updates: list[Manual] = []
    questions: list[Question] = []
    changed: list[Change] = []
    for n, product in enumerate(names):
        figures = _figures(rng)
        manual = _manual(random.Random(f"{seed}:{product}:1"), product, 1, figures)
        manuals.append(manual)
        keys = sorted(manual.facts)
        rng.shuffle(keys)
        for i, key in enumerate(keys[:questions_per_manual]):
            fact = manual.facts[key]
            kind = "paraphrase" if (i + n) % 2 else "direct"
            questions.append(
                Question(
                    id=f"{stem(manual)}:{key}",
                    question=(fact.unseen if unseen else fact.paraphrase)
                    if kind == "paraphrase"
                    else fact.direct,
                    product=product,
                    manual=stem(manual),
                    phrase=fact.phrase,
                    kind=kind,
                    fact=key,
                )
            )
        if n < updated:
            new = dict(figures)
            new["warranty"] = figures["warranty"] + rng.choice((1, 2, 3))
            new["runtime"] = figures["runtime"] + rng.choice((1, 1.5, 2))
            update = _manual(random.Random(f"{seed}:{product}:2"), product, 2, new)
            updates.append(update)
            for key in ("warranty", "runtime"):
                fact = update.facts[key]
                changed.append(
                    Change(
                        Question(
                            id=f"{stem(update)}:{key}:v2",
                            question=fact.direct,
                            product=product,
                            manual=stem(update),
                            phrase=fact.phrase,
                            kind="changed",
                            fact=key,
                        ),
                        old_phrase=manual.facts[key].phrase,
                    )
                )
    return Corpus(seed, manuals, updates, questions, changed)


if __name__ == "__main__":  # a quick look: python benchmarks/retrieval_corpus.py OUT_DIR
    import sys

    corpus = make_corpus()
    v1, v2 = corpus.write(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus"))
    print(f"{len(v1)} manuals, {len(v2)} new versions, {len(corpus.questions)} questions")
    for q in corpus.questions[:6]:
        print(f"  [{q.kind}] {q.question} -> {q.phrase!r} ({q.manual})")
