"""Workbook pages typeset by a real engine (XeLaTeX), with ground truth from the typesetter itself.

The demo generator (demo_data.py) draws its pages with PIL; a detector and its post-processing
tuned on them may learn that generator's habits. These pages come from a different kind of
source: LaTeX documents in the styles of real workbooks and exams (Korean with kotex and English,
one or two columns, display math, TikZ figures, tables, answer choices, framed questions, section
titles, running headers and page numbers, blank working space of varying height), compiled with
XeLaTeX and rendered with pdftoppm.

The ground truth is the tight union of each question's ink, as the app's combinedBbox is the union
of the blocks a person grouped (no working space: nobody's blocks cover blank paper). It is taken
from the typesetter, not guessed: every question is typeset in a colour of its own (its figures
and tables, drawn in the current colour, follow it), the page is rendered, and each question's
box is the extent of the pixels of its colour. A colour changes no layout, so the same source
compiled with every question in black gives the page image with the same geometry; the generator
checks that the ink of the two renders has the same extent, page by page.

Needs ``xelatex`` (Debian: texlive-xetex texlive-lang-korean texlive-pictures texlive-latex-extra
fonts-nanum) and ``pdftoppm`` (poppler-utils).
"""

from __future__ import annotations

import colorsys
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from qblock.core.errors import UserError
from qblock.data.app_folder import AppFolder
from qblock.labeling.demo_data import Box, groups_document

TOOLS = ("xelatex", "pdftoppm")
INSTALL_HINT = ("apt-get install texlive-xetex texlive-lang-korean texlive-pictures texlive-latex-extra "
                "fonts-nanum poppler-utils (Debian/Ubuntu), or a TeX Live with xetex, kotex, pgf and a Nanum font")
HUES = 24  # distinct question colours on one page; neighbours in reading order get far-apart ones
HUE_STRIDE = 7  # coprime to HUES
MIN_COVER = 0.5  # a pixel counts as a question's ink from half coverage on (anti-aliased edges)
MIN_COSINE = 0.995  # how close a pixel's colour must be to its question's

DOCUMENT_NAMES = (
    '모의고사 1회',
    'exam practice A',
    '고등 수학 하',
    'problem set 7',
    '수학 I 기출',
    'linear algebra drill',
    '중등 도형 심화',
    'weekly quiz',
    '확률 단원 평가',
    'calculus exam B',
)
KO_STEMS = (
    '다음 식의 값을 구하시오.',
    '그림과 같이 삼각형 ABC에서 선분의 길이를 구하시오.',
    '다음 중 옳은 것만을 보기에서 있는 대로 고른 것은?',
    '함수의 그래프가 점을 지날 때, 상수의 값은?',
    '두 점 사이의 거리를 구하여라.',
    '다음 표는 어느 반 학생들의 점수를 조사한 것이다.',
    '방정식의 모든 실근의 합을 구하시오.',
    '수열의 일반항을 구하고, 첫째항부터 제10항까지의 합을 구하시오.',
    '좌표평면 위의 원과 직선이 만나는 두 점을 각각 P, Q라 할 때, 선분 PQ의 길이는?',
)
EN_STEMS = (
    'Evaluate the expression below.',
    'In the figure, find the length of the segment AB.',
    'Which of the following statements are true?',
    'The graph of the function passes through the point $(2, 5)$. Find the constant $a$.',
    'Solve the equation for all real $x$.',
    'The table shows the scores of a class. Find the mean and the median.',
    'Find the general term of the sequence and the sum of its first ten terms.',
    'A circle and a line meet at two points P and Q. Find the length of PQ.',
)
DISPLAYS = (
    r'\int_{0}^{%d} (%dx^2 + %dx)\,dx',
    r'\lim_{x \to %d} \frac{x^2 - %d}{x - %d}',
    r'\sum_{k=1}^{%d} (%dk + %d)',
    r'\begin{pmatrix} %d & %d \\ %d & 1 \end{pmatrix}^{2}',
    r'f(x) = \frac{%dx + %d}{x^2 + %d}',
    r'\sqrt{%d} + \sqrt{%d} - \frac{1}{\sqrt{%d}}',
    r'\log_{2} %d + \log_{2} %d - \log_{2} %d',
    r'x^3 - %dx^2 + %dx - %d = 0',
)


@dataclass(frozen=True)
class Workbook:
    """What one typeset document's pages share."""

    paper: str  # a4paper | b5paper
    columns: int
    font_size: int  # pt
    korean: bool
    framed: bool
    dpi: int
    numbering: str  # how questions are numbered: bold | boxed | word
    section_titles: bool
    column_rule: bool

    @classmethod
    def random(cls, rng: random.Random) -> Workbook:
        return cls(paper=rng.choice(("a4paper", "b5paper")), columns=rng.choice((1, 2, 2)),
                   font_size=rng.choice((10, 11, 12)), korean=rng.random() < 0.6, framed=rng.random() < 0.3,
                   dpi=rng.choice((100, 120, 150)), numbering=rng.choice(("bold", "boxed", "word")),
                   section_titles=rng.random() < 0.5, column_rule=rng.random() < 0.5)


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def write_typeset_dataset(root: Path, documents: int = 8, pages: int = 6, seed: int = 0,
                          progress: Callable[[int], None] | None = None) -> int:
    """Typeset ``documents`` workbooks of up to ``pages`` pages under ``root`` in the app's layout;
    return the page count. ``progress`` is called with each document's page count."""
    if documents < 1 or pages < 1:
        raise ValueError("documents and pages must be at least 1")
    if missing := missing_tools():
        raise UserError(f"typeset pages need {' and '.join(missing)}, not found on PATH: {INSTALL_HINT}")
    written = 0
    for index in range(documents):
        rng = random.Random(f"typeset/{seed}/{index}")
        name = DOCUMENT_NAMES[index % len(DOCUMENT_NAMES)] + (f" {index}" if index >= len(DOCUMENT_NAMES) else "")
        count = write_document(AppFolder(root), name, Workbook.random(rng), rng, pages)
        written += count
        if progress:
            progress(count)
    return written


def write_document(app: AppFolder, title: str, book: Workbook, rng: random.Random, pages: int) -> int:
    """One workbook: its pages and groups files as the document ``title`` of ``app``; return its page count."""
    questions = [question_source(rng, book, number) for number in range(1, pages * 14 + 1)]
    sections = {n: rng.choice(SECTIONS_KO if book.korean else SECTIONS_EN) for n in range(1, len(questions) + 1)
                if book.section_titles and n > 1 and rng.random() < 0.12}
    with tempfile.TemporaryDirectory(prefix="qblock-typeset-") as temp:
        work = Path(temp)
        black = compile_pages(work, "black", document_source(title, book, questions, sections, None), book.dpi, pages)
        placed = read_placements(work / "black.qlog", len(black))
        colours = page_colours(placed)
        coloured = compile_pages(work, "colour", document_source(title, book, questions, sections, colours),
                                 book.dpi, pages)
        for folder in (app.pages_folder(title), app.groups_folder(title), app.document(title) / "blocks",
                       app.document(title) / "problems"):  # the app's own folders, empty here
            folder.mkdir(parents=True, exist_ok=True)
        for number, (image_path, colour_path) in enumerate(zip(black, coloured, strict=True), start=1):
            page = f"page_{number:03d}"
            with Image.open(image_path) as image, Image.open(colour_path) as colour:
                plain, painted = np.asarray(image.convert("RGB")), np.asarray(colour.convert("RGB"))
                if ink_extent(plain) != ink_extent(painted):
                    raise RuntimeError(f"{title} page {number}: the black and the coloured render differ in layout")
                on_page = [q for q, p in placed.items() if p == number]
                boxes = [question_box(painted, colours[q], f"{title} page {number} question {q}") for q in on_page]
                image.convert("RGB").save(app.new_page_image(title, page), compress_level=1)
                document = groups_document(page, boxes, image.size)
            import json

            app.groups_file(title, page).write_text(
                json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    return len(black)


# --- the LaTeX source -------------------------------------------------------------------------

SECTIONS_KO = (
    'Ⅰ. 다항식의 연산',
    'Ⅱ. 방정식과 부등식',
    'Ⅲ. 도형의 방정식',
    '유형 05 함수의 극한',
    '실전 문제',
)
SECTIONS_EN = (
    'Part A. Algebra',
    'Part B. Geometry',
    'Section 3: Limits',
    'Review problems',
    'Challenge set',
)


def question_source(rng: random.Random, book: Workbook, number: int) -> str:
    """One question's body (without its colour and frame): number, stem, and some of display math, a
    figure, a table, answer choices; a trailing amount of working space is added by the caller."""
    label = {"bold": rf"\textbf{{{number}.}}", "boxed": rf"\fbox{{\textbf{{{number:02d}}}}}",
             "word": (rf"\textbf{{문제 {number}}}" if book.korean else rf"\textbf{{Problem {number}}}")}[book.numbering]
    stems = KO_STEMS if book.korean else EN_STEMS
    stem = " ".join(rng.choice(stems) for _ in range(rng.choice((1, 1, 2, 3))))
    if rng.random() < 0.4:
        stem += rf" (단, $a > {rng.randint(0, 9)}$)" if book.korean else rf" (where $a > {rng.randint(0, 9)}$)"
    if book.korean and rng.random() < 0.4:
        stem += rf" \hfill[{rng.choice((2, 3, 4))}점]"
    parts = [rf"{label}\ {stem}"]
    extras = rng.random()
    if extras < 0.35:
        template = rng.choice(DISPLAYS)
        parts.append(r"\[" + template % tuple(rng.randint(2, 9) for _ in range(template.count("%d"))) + r"\]")
    elif extras < 0.55:
        parts.append(figure_source(rng))
    elif extras < 0.68:
        parts.append(table_source(rng))
    if rng.random() < 0.5:
        parts.append(choices_source(rng, book))
    return "\n\n".join(parts)


def figure_source(rng: random.Random) -> str:
    width = rng.uniform(2.5, 5.0)
    kind = rng.choice(("graph", "triangle", "circle", "bars", "numberline"))
    s = width / 4
    if kind == "graph":
        body = (rf"\draw[->] (-0.3,0) -- ({4 * s:.2f},0) node[right] {{$x$}}; \draw[->] (0,-0.3) -- (0,{3 * s:.2f}) "
                rf"node[above] {{$y$}}; \draw[thick,domain=0:{3.6 * s:.2f},samples=40] plot (\x,{{{0.8 / s:.3f}*(\x-"
                rf"{1.8 * s:.2f})*(\x-{1.8 * s:.2f})+0.3}}); \fill (0,0) circle (1.5pt) node[below left] {{O}};")
    elif kind == "triangle":
        body = (rf"\draw[thick] (0,0) node[below left] {{B}} -- ({4 * s:.2f},0) node[below right] {{C}} -- "
                rf"({rng.uniform(0.8, 3.2) * s:.2f},{rng.uniform(1.8, 3) * s:.2f}) node[above] {{A}} -- cycle; "
                rf"\draw[dashed] ({2 * s:.2f},0) -- ({2 * s:.2f},{0.9 * s:.2f});")
    elif kind == "circle":
        body = (rf"\draw[thick] (0,0) circle ({1.6 * s:.2f}); \fill[.!15] (0,0) -- ({1.6 * s:.2f},0) "
                rf"arc (0:{rng.randint(40, 140)}:{1.6 * s:.2f}) -- cycle; "
                r"\fill (0,0) circle (1.5pt) node[below] {O};")
    elif kind == "bars":
        heights = [rng.uniform(0.4, 2.6) * s for _ in range(rng.randint(3, 6))]
        body = rf"\draw (0,0) -- ({len(heights) * 0.7 * s + 0.2:.2f},0);" + "".join(
            rf"\draw[fill=.!20] ({0.2 + i * 0.7 * s:.2f},0) rectangle ++({0.5 * s:.2f},{h:.2f});"
            for i, h in enumerate(heights))
    else:
        body = rf"\draw[<->] (0,0) -- ({4 * s:.2f},0);" + "".join(
            rf"\draw ({i * 0.6 * s + 0.3:.2f},0.1) -- ++(0,-0.2) node[below] {{\small ${i - 2}$}};" for i in range(6))
    align = rng.choice((r"\centering", r"\hfill", ""))
    return rf"{{{align}\begin{{tikzpicture}}{body}\end{{tikzpicture}}\par}}"


def table_source(rng: random.Random) -> str:
    columns = rng.randint(3, 5)
    rows = [[str(rng.randint(1, 99)) for _ in range(columns)] for _ in range(rng.randint(1, 3))]
    header = " & ".join(["$x$"] + [chr(65 + i) for i in range(columns - 1)])
    body = r" \\ \hline ".join(" & ".join(row) for row in rows)
    return rf"{{\centering\begin{{tabular}}{{|{'c|' * columns}}}\hline {header} \\ \hline {body} \\ \hline" \
           r"\end{tabular}\par}"


def choices_source(rng: random.Random, book: Workbook) -> str:
    marks = ("①", "②", "③", "④", "⑤") if book.korean else ("(1)", "(2)", "(3)", "(4)", "(5)")
    values = [rf"${rng.randint(-9, 20)}$" if rng.random() < 0.7
              else rf"$\frac{{{rng.randint(1, 9)}}}{{{rng.randint(2, 9)}}}$" for _ in marks]
    items = [f"{m}~{v}" for m, v in zip(marks, values, strict=True)]
    per_row = rng.choice((5, 5, 3))
    rows = [r"\hfill ".join(items[i:i + per_row]) + (r"\hfill\null" if per_row == 3 else "")
            for i in range(0, 5, per_row)]
    return r"\par ".join(rows)


def document_source(title: str, book: Workbook, questions: list[str], sections: dict[int, str],
                    colours: dict[int, tuple[int, int, int]] | None) -> str:
    """The whole document; ``colours`` None typesets every question in black (the page image)."""
    lines = [rf"\documentclass[{book.font_size}pt,{book.paper}{',twocolumn' if book.columns == 2 else ''}]{{article}}",
             r"\usepackage[margin=18mm,top=24mm,bottom=22mm,columnsep=9mm]{geometry}",
             r"\usepackage{amsmath,amssymb,xcolor,tikz,fancyhdr,array}",
             r"\usepackage{kotex}", r"\setmainhangulfont{NanumMyeongjo}[BoldFont=NanumMyeongjoBold]",
             r"\pagestyle{fancy}\fancyhf{}",
             rf"\fancyhead[L]{{\textbf{{{title}}}}}\fancyhead[R]{{{'수학 영역' if book.korean else 'Mathematics'}}}",
             r"\fancyfoot[C]{\thepage}\renewcommand{\headrulewidth}{0.6pt}",
             r"\setlength{\parindent}{0pt}\setlength{\parskip}{0.4ex}\raggedbottom",
             rf"\setlength{{\columnseprule}}{{{'0.4pt' if book.column_rule else '0pt'}}}",
             r"\newwrite\qlog\immediate\openout\qlog=\jobname.qlog"]
    if colours is None:
        lines.append(r"\newcommand{\QC}[1]{\color[rgb]{0,0,0}\write\qlog{#1 \thepage}}")
    else:
        lines.append(r"\newcommand{\QC}[1]{\csname qc#1\endcsname\write\qlog{#1 \thepage}}")
        # decimal rgb: xcolor's mixes with the current colour (fill=.!20) fail under the RGB model
        lines += [rf"\expandafter\def\csname qc{q}\endcsname{{\color[rgb]{{{r / 255:.4f},{g / 255:.4f},"
                  rf"{b / 255:.4f}}}}}" for q, (r, g, b) in colours.items()]
        lines.append(r"\def\qcunplaced{\color[rgb]{0,0,0}}")
    lines.append(r"\begin{document}")
    rng = random.Random(title)  # working space: the same in both renders
    for number, body in enumerate(questions, start=1):
        if number in sections:
            lines.append(rf"\par\medskip{{\large\textbf{{{sections[number]}}}}}\par\smallskip")
        colour_key = number if colours is None or number in colours else "unplaced"
        inner = rf"\begin{{minipage}}{{\linewidth}}\QC{{{colour_key}}}{body}\end{{minipage}}"
        if book.framed:
            inner = (rf"\fbox{{\begin{{minipage}}{{\dimexpr\linewidth-2\fboxsep-2\fboxrule}}\QC{{{colour_key}}}{body}"
                     r"\end{minipage}}")
        space = rng.choice((0.2, 0.5, 1.0, 2.0, 3.5, 5.0)) * rng.uniform(0.8, 1.2)
        lines.append(rf"\par\noindent{inner}\par\vspace{{{space:.2f}cm}}")
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


# --- compiling, rendering and reading the ink -------------------------------------------------

def compile_pages(work: Path, name: str, source: str, dpi: int, pages: int) -> list[Path]:
    """``source`` compiled with XeLaTeX and its first ``pages`` pages rendered to PNG at ``dpi``."""
    (work / f"{name}.tex").write_text(source, encoding="utf-8")
    done = subprocess.run(["xelatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"], cwd=work,
                          capture_output=True, text=True, errors="replace")
    if done.returncode != 0 or not (work / f"{name}.pdf").is_file():
        tail = "\n".join(done.stdout.splitlines()[-15:])
        raise RuntimeError(f"xelatex failed on a typeset page source ({name}.tex):\n{tail}")
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", "-f", "1", "-l", str(pages), f"{name}.pdf", name],
                   cwd=work, check=True, capture_output=True)
    return sorted(work.glob(f"{name}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def read_placements(log: Path, pages: int) -> dict[int, int]:
    """question number -> the page it was typeset on (written at shipout), for the rendered pages."""
    placed = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        number, page = line.split()
        if int(page) <= pages:
            placed[int(number)] = int(page)
    return placed


def page_colours(placed: dict[int, int]) -> dict[int, tuple[int, int, int]]:
    """A colour per question, unique on its page; neighbours in reading order get far-apart hues."""
    colours, seen = {}, dict.fromkeys(placed.values(), 0)
    for number in sorted(placed):
        slot = seen[placed[number]]
        if slot >= HUES:
            raise RuntimeError(f"more than {HUES} questions on typeset page {placed[number]}")
        seen[placed[number]] += 1
        r, g, b = colorsys.hsv_to_rgb((slot * HUE_STRIDE % HUES) / HUES, 1.0, 1.0)
        colours[number] = (round(r * 255), round(g * 255), round(b * 255))
    return colours


def ink_extent(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero((255 - pixels.astype(np.int16)).max(axis=2) > 127)
    return (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())) if len(xs) else None


def question_box(pixels: np.ndarray, colour: tuple[int, int, int], where: str) -> Box:
    """The tight box of the pixels drawn in ``colour`` at half coverage or more (white blends keep
    the direction of white minus the colour)."""
    want = 255.0 - np.array(colour, dtype=np.float32)
    away = 255.0 - pixels.astype(np.float32)
    cover = (away @ want) / float(want @ want)
    norms = np.linalg.norm(away, axis=2) * float(np.linalg.norm(want))
    cosine = np.divide(away @ want, norms, out=np.zeros_like(cover), where=norms > 0)
    ys, xs = np.nonzero((cover >= MIN_COVER) & (cosine >= MIN_COSINE))
    if not len(xs):
        raise RuntimeError(f"{where}: no ink of its colour on the rendered page")
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1 - int(xs.min()), int(ys.max()) + 1 - int(ys.min()))
