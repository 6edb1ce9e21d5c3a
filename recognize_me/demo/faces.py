"""Cartoon face renderer behind the synthetic demo data (see ``demo_data``).

Pure and deterministic: every random choice comes from the ``numpy.random.Generator`` passed in.
A face is drawn in *face units* (1 unit = half the face width, origin between the eyes, y down),
so the same code draws a 178x218 CelebA-style crop and a 400 px "photo". Every one of the 40
CelebA attributes maps to something visible (see ``render_face``); the rest of the variation
(background, clothes, pose, light, noise) is nuisance a model has to ignore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

RGB = tuple[int, int, int]
Point = tuple[float, float]

#: Drawing happens at this multiple of the output size, then is reduced (cheap anti-aliasing).
SUPERSAMPLE = 2

HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
_EYE_COLOURS: tuple[RGB, ...] = ((92, 58, 32), (58, 38, 22), (70, 110, 170), (70, 128, 80), (120, 95, 50),
                                 (118, 128, 140))
_METALS: tuple[RGB, ...] = ((222, 180, 50), (205, 205, 215), (240, 236, 225))
_SHADOWS: tuple[RGB, ...] = ((120, 60, 140), (60, 80, 150), (110, 70, 50), (150, 60, 100), (40, 40, 50))
_LIPSTICKS: tuple[RGB, ...] = ((200, 20, 40), (170, 10, 50), (215, 45, 70), (150, 15, 30))


@dataclass(frozen=True)
class Look:
    """Identity-level appearance that the 40 labels leave open (constant across a person's photos)."""

    skin: RGB
    hair: RGB
    eyes: RGB
    long_hair: bool
    width: float = 1.0          # face width multiplier (before Chubby)
    eye_spacing: float = 0.40   # eye centre distance from the midline
    round_glasses: bool = False
    mole: Point | None = None   # a dark mole at this face-unit position


@dataclass(frozen=True)
class Scene:
    """Per-photo framing and nuisance."""

    size: tuple[int, int]       # output (width, height)
    center: Point               # face origin in output pixels
    unit: float                 # output pixels per face unit
    angle: float                # degrees counter-clockwise
    background: RGB
    clothes: RGB
    accent: RGB                 # hat and necktie colour
    brightness: float
    contrast: float
    noise: float                # std of Gaussian pixel noise (0-255 scale)
    light_slope: float = 0.0    # left-right lighting gradient, fraction of brightness
    soften: float = 0.0         # slight blur radius in face units (Blurry is ~6x stronger)


# --------------------------------------------------------------------------------------------- looks

def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return tuple(int(round(a[i] * (1 - t) + b[i] * t)) for i in range(3))  # type: ignore[return-value]


def _shade(c: Sequence[float], f: float) -> RGB:
    return tuple(int(min(255, max(0, round(v * f)))) for v in c[:3])  # type: ignore[return-value]


def _rgba(c: Sequence[int], alpha: int) -> tuple[int, int, int, int]:
    return (c[0], c[1], c[2], alpha)


def _jitter(c: RGB, rng: np.random.Generator, amount: int) -> RGB:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)  # type: ignore[return-value]


def skin_tone(pale: bool, rng: np.random.Generator) -> RGB:
    """Pale_Skin: near-white pink; otherwise anywhere from dark brown to light, skewed light."""
    if pale:
        return _jitter((248, 228, 218), rng, 5)
    return _jitter(_mix((96, 60, 40), (232, 184, 150), float(rng.beta(2.4, 1.3))), rng, 6)


def hair_tone(attrs: Mapping[str, int], rng: np.random.Generator) -> RGB:
    """The hair colour named by the labels; unlabelled hair is auburn to strawberry, a bald fringe grey."""
    t = float(rng.random())
    if attrs.get("Black_Hair"):
        return _mix((22, 20, 20), (45, 38, 36), t)
    if attrs.get("Blond_Hair"):
        return _mix((218, 184, 112), (244, 218, 156), t)
    if attrs.get("Brown_Hair"):
        return _mix((82, 50, 30), (128, 84, 50), t)
    if attrs.get("Gray_Hair"):
        g = int(165 + 45 * t)
        return (g, g, min(255, g + 6))
    if attrs.get("Bald"):
        return _mix((60, 54, 50), (150, 145, 140), t)
    # no CelebA hair-colour label: auburn .. red .. strawberry
    return _mix((128, 50, 26), (182, 86, 44), t) if t < 0.7 else _mix((182, 86, 44), (205, 135, 85), t)


def random_look(attrs: Mapping[str, int], rng: np.random.Generator) -> Look:
    """A random person consistent with the identity-level labels (sex, skin, hair colour)."""
    male = bool(attrs.get("Male"))
    return Look(
        skin=skin_tone(bool(attrs.get("Pale_Skin")), rng),
        hair=hair_tone(attrs, rng),
        eyes=_EYE_COLOURS[int(rng.integers(len(_EYE_COLOURS)))],
        long_hair=bool(rng.random() < (0.06 if male else 0.85)),
        width=float(rng.uniform(0.94, 1.06)),
        eye_spacing=float(rng.uniform(0.37, 0.43)),
        round_glasses=bool(rng.random() < 0.4),
    )


# --------------------------------------------------------------------------------------------- scenes

def _muted_colour(rng: np.random.Generator) -> RGB:
    return _mix(tuple(int(v) for v in rng.integers(0, 256, 3)), (128, 128, 128), float(rng.uniform(0.1, 0.6)))


def _appearance(rng: np.random.Generator, *, brightness: tuple[float, float], contrast: tuple[float, float],
                noise: tuple[float, float], slope: float) -> dict:
    """Colours, lighting and noise of a scene, drawn in a fixed order (the demo data depends on it)."""
    return dict(
        background=_muted_colour(rng),
        clothes=_muted_colour(rng),
        accent=tuple(int(v) for v in rng.integers(20, 236, 3)),
        brightness=float(rng.uniform(*brightness)),
        contrast=float(rng.uniform(*contrast)),
        noise=float(rng.uniform(*noise)),
        light_slope=float(rng.uniform(-slope, slope)),
        soften=float(rng.uniform(0.004, 0.012)) if rng.random() < 0.3 else 0.0,
    )


def celeba_scene(rng: np.random.Generator, size: tuple[int, int] = (178, 218)) -> Scene:
    """An aligned 178x218 crop: face centred, eyes near row 110, small residual pose jitter."""
    w, h = size
    s = w / 178
    return Scene(
        size=size,
        center=(w / 2 + rng.normal(0, 2.5 * s), h * 114 / 218 + rng.normal(0, 2.5 * s)),
        unit=42 * s * float(rng.uniform(0.9, 1.1)),
        angle=float(np.clip(rng.normal(0, 3), -8, 8)),
        **_appearance(rng, brightness=(0.78, 1.18), contrast=(0.78, 1.15), noise=(1.5, 6.0), slope=0.12),
    )


def photo_scene(rng: np.random.Generator) -> Scene:
    """A casual square-ish photo, 160-400 px, the face 40-60 % of the frame height."""
    w = int(rng.integers(160, 401))
    h = int(round(w * rng.uniform(1.0, 1.3)))
    face_fraction = float(rng.uniform(0.42, 0.58))
    return Scene(
        size=(w, h),
        center=(w / 2 + rng.normal(0, 0.04 * w), h * 0.46 + rng.normal(0, 0.03 * h)),
        unit=face_fraction * h / 2.7,
        angle=float(np.clip(rng.normal(0, 5), -12, 12)),
        **_appearance(rng, brightness=(0.7, 1.2), contrast=(0.7, 1.15), noise=(1.0, 5.0), slope=0.2),
    )


# --------------------------------------------------------------------------------------------- drawing

class _Painter:
    """ImageDraw in face units, rotated about the face origin (alpha-blended fills on the RGB canvas).

    Rotating the geometry instead of the raster keeps edges sharp and costs nothing, so ellipses
    and rounded rectangles are drawn as polygons.
    """

    def __init__(self, img: Image.Image, center: Point, unit: float, angle: float = 0.0):
        self.draw = ImageDraw.Draw(img, "RGBA")
        self.center = np.asarray(center, dtype=float)
        rad = np.deg2rad(angle)  # counter-clockwise on screen (y points down)
        self.m = unit * np.array([[np.cos(rad), np.sin(rad)], [-np.sin(rad), np.cos(rad)]])
        self.u = unit

    def pts(self, points: Sequence[Point] | np.ndarray) -> list[tuple[float, float]]:
        xy = np.asarray(points, dtype=float).reshape(-1, 2) @ self.m.T + self.center
        return [tuple(p) for p in xy.tolist()]

    def w(self, width: float) -> int:
        return max(1, int(round(width * self.u)))

    def polygon(self, points: Sequence[Point] | np.ndarray, fill=None, outline=None, width: float = 0.0):
        self.draw.polygon(self.pts(points), fill=fill, outline=outline,
                          width=self.w(width) if outline is not None else 1)

    def line(self, points: Sequence[Point] | np.ndarray, fill, width: float):
        self.draw.line(self.pts(points), fill=fill, width=self.w(width), joint="curve")

    def ellipse(self, x: float, y: float, rx: float, ry: float, fill=None, outline=None, width: float = 0.0):
        ring = _unit_circle(min(48, max(8, int(max(rx, ry) * self.u * 0.8)))) * (rx, ry) + (x, y)
        if fill is not None:
            self.polygon(ring, fill=fill)
        if outline is not None:
            self.line(np.concatenate([ring, ring[:2]]), fill=outline, width=width)

    def rounded_rect(self, x0: float, y0: float, x1: float, y1: float, radius: float, outline, width: float,
                     fill=None):
        t = np.linspace(0, np.pi / 2, 6)
        arc = np.stack([np.cos(t), np.sin(t)], axis=1) * radius
        corners = [((x1 - radius, y1 - radius), 0), ((x0 + radius, y1 - radius), 1),
                   ((x0 + radius, y0 + radius), 2), ((x1 - radius, y0 + radius), 3)]
        ring = np.concatenate([np.asarray(c) + _rot90(arc, k) for c, k in corners])
        if fill is not None:
            self.polygon(ring, fill=fill)
        self.line(np.concatenate([ring, ring[:2]]), fill=outline, width=width)


@lru_cache(maxsize=64)
def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _rot90(points: np.ndarray, k: int) -> np.ndarray:
    """Rotate points by k quarter turns (x -> y -> -x, screen coordinates)."""
    for _ in range(k):
        points = np.stack([-points[:, 1], points[:, 0]], axis=1)
    return points


@dataclass(frozen=True)
class _Geometry:
    """Face proportions derived from the shape labels."""

    fw: float          # half width
    top: float         # forehead-to-crown half height (upwards)
    bottom: float      # chin depth (downwards)
    jaw_power: float   # 2 = elliptic jaw, larger = squarer
    taper: float       # how much the jaw narrows towards the chin
    eye_x: float
    eye_y: float = -0.12

    def outline(self, steps: int = 64) -> np.ndarray:
        t = np.linspace(0, 2 * np.pi, steps, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        lower = s > 0
        n = np.where(lower, self.jaw_power, 2.0)
        x = self.fw * np.sign(c) * np.abs(c) ** (2 / n)
        y = np.where(lower, self.bottom, self.top) * np.sign(s) * np.abs(s) ** (2 / n)
        x = np.where(lower, x * (1 - self.taper * y / self.bottom), x)
        return np.stack([x, y], axis=1)

    def half_width_at(self, y: float) -> float:
        out = self.outline(128)
        side = out[out[:, 0] > 0]
        return float(np.interp(y, side[np.argsort(side[:, 1]), 1], side[np.argsort(side[:, 1]), 0]))


def _geometry(a: Mapping[str, int], look: Look) -> _Geometry:
    """Oval: long egg-shaped face; Chubby: wider and squarer; Male: squarer jaw, female: finer chin."""
    fw = look.width * (1.1 if a.get("Chubby") else 1.0)
    male = bool(a.get("Male"))
    if a.get("Oval_Face"):
        return _Geometry(fw, 1.32, 1.45, 2.2 if male else 2.0, 0.12 if male else 0.18, look.eye_spacing)
    power = (2.9 if a.get("Chubby") else 2.5) + (0.4 if male else 0.0)
    return _Geometry(fw, 1.28, 1.27, power, 0.02 if male else 0.08, look.eye_spacing)


def _wavy(points: np.ndarray, amplitude: float, freq: float, axis: int) -> np.ndarray:
    """Displace a polyline sideways by a sine of its position along the other axis."""
    out = points.copy()
    out[:, axis] += amplitude * np.sin(freq * points[:, 1 - axis])
    return out


def _strand_colour(hair: RGB) -> RGB:
    """Strand lines that stand out: darker on light hair, lighter on dark hair."""
    return _shade(hair, 0.6) if sum(hair) > 330 else _mix(hair, (190, 170, 150), 0.45)


def _hair_back(pp: _Painter, a: Mapping[str, int], look: Look, g: _Geometry) -> None:
    if a.get("Bald"):
        return
    wavy = bool(a.get("Wavy_Hair"))
    strand = _strand_colour(look.hair)
    if look.long_hair:
        # straight: long, flared, blunt cut; wavy: long with rippled edges; neither: a softer,
        # shorter bob whose ends curl inwards
        textured = wavy or bool(a.get("Straight_Hair"))
        a_, b_ = g.fw + 0.2, g.top + 0.2
        t = np.linspace(np.pi, 2 * np.pi, 24)
        crown = np.stack([a_ * np.cos(t), b_ * np.sin(t)], axis=1)
        length = 2.2 if textured else 1.7
        ys = np.linspace(0, length, 16)
        flare = 0.12 * ys if textured else 0.2 * np.sin(np.pi * ys / length)
        right = np.stack([a_ + 0.05 + flare, ys], axis=1)
        if not textured:
            right = np.concatenate([right, [(a_ - 0.05, length + 0.1), (a_ - 0.3, length - 0.05)]])
        if wavy:
            right = _wavy(right, 0.1, 7.0, 0)
        left = right[::-1] * np.array([-1.0, 1.0])
        pp.polygon(np.concatenate([left, crown, right]), fill=look.hair)
        if textured:
            for side in (-1, 1):
                for k in range(3):
                    x0 = side * (g.fw + 0.04 + 0.12 * k)
                    line = np.stack([np.full_like(ys, x0) + side * 0.1 * ys, ys], axis=1)
                    if wavy:
                        line = _wavy(line, 0.07, 7.0, 0)
                    pp.line(line, fill=_rgba(strand, 220), width=0.045)
    else:
        t = np.linspace(np.pi * 0.92, np.pi * 2.08, 40)
        r = 1 + (0.045 * np.sin(14 * t) if wavy else 0)
        cap = np.stack([(g.fw + 0.1) * r * np.cos(t), (g.top + 0.15) * r * np.sin(t) - 0.05], axis=1)
        pp.polygon(cap, fill=look.hair)


def _hairline(a: Mapping[str, int], g: _Geometry, xs: np.ndarray) -> np.ndarray:
    rel = np.abs(xs) / g.fw
    if a.get("Receding_Hairline"):
        return -1.02 - 0.2 * np.exp(-(((rel - 0.5) / 0.17) ** 2)) + 0.77 * rel ** 3
    if a.get("Bangs"):
        jag = np.where(np.arange(len(xs)) % 2 == 0, 0.0, 0.08)
        return -0.5 + 0.22 * rel ** 4 + jag
    return -0.8 + 0.55 * rel ** 2.5


def _hair_front(pp: _Painter, a: Mapping[str, int], look: Look, g: _Geometry) -> None:
    if a.get("Bald"):
        for side in (-1, 1):  # fringe of hair above the ears, shiny scalp
            x_in = side * (g.half_width_at(-0.2) - 0.08)
            pp.polygon([(x_in, -0.55), (x_in + side * 0.16, -0.6), (x_in + side * 0.2, 0.05), (x_in, 0.02)],
                       fill=look.hair)
        pp.ellipse(-0.3, -0.95, 0.25, 0.12, fill=(255, 255, 255, 70))
        return
    ax, by = g.fw + 0.08, g.top + 0.12
    temple_y = -0.25
    t0 = np.arcsin(temple_y / by)          # right temple angle (negative)
    t = np.linspace(np.pi - t0, 2 * np.pi + t0, 30)
    crown = np.stack([ax * np.cos(t), by * np.sin(t)], axis=1)
    if a.get("Wavy_Hair") and not look.long_hair:
        crown *= (1 + 0.045 * np.sin(14 * t))[:, None]
    xs = np.linspace(ax * np.cos(t0), -ax * np.cos(t0), 23)
    hairline = np.stack([xs, np.maximum(_hairline(a, g, xs), -by + 0.05)], axis=1)
    pp.polygon(np.concatenate([crown, hairline]), fill=look.hair)
    # strands: straight lines or waves running from the crown to the hairline
    if a.get("Straight_Hair") or a.get("Wavy_Hair"):
        strand = _strand_colour(look.hair)
        for x_end, y_end in hairline[2:-2:2]:
            line = np.stack([np.linspace(x_end * 0.5, x_end, 8), np.linspace(-by + 0.12, y_end - 0.03, 8)], axis=1)
            if a.get("Wavy_Hair"):
                line = _wavy(line, 0.05, 16.0, 0)
            pp.line(line, fill=_rgba(strand, 220), width=0.04)


def _body(pp: _Painter, a: Mapping[str, int], look: Look, scene: Scene, rng: np.random.Generator) -> None:
    neck = _shade(look.skin, 0.88)
    nw = 0.5 if a.get("Male") else 0.4  # men: thicker neck, broader shoulders
    pp.polygon([(-nw, 0.8), (nw, 0.8), (nw + 0.03, 1.8), (-nw - 0.03, 1.8)], fill=neck)
    pp.ellipse(0, 2.95, 2.35 if a.get("Male") else 1.95, 1.4, fill=scene.clothes)
    pp.polygon([(-0.44, 1.55), (0.44, 1.55), (0, 1.95)], fill=neck)  # V neckline
    if a.get("Wearing_Necktie"):
        shirt = (238, 238, 235)
        pp.polygon([(-0.55, 1.55), (-0.1, 1.62), (0, 1.9), (-0.35, 1.9)], fill=shirt)
        pp.polygon([(0.55, 1.55), (0.1, 1.62), (0, 1.9), (0.35, 1.9)], fill=shirt)
        pp.polygon([(-0.12, 1.58), (0.12, 1.58), (0.08, 1.75), (-0.08, 1.75)], fill=_shade(scene.accent, 0.85))
        pp.polygon([(-0.08, 1.75), (0.08, 1.75), (0.19, 2.55), (0, 2.7), (-0.19, 2.55)], fill=scene.accent)
    if a.get("Wearing_Necklace"):
        metal = _METALS[int(rng.integers(len(_METALS)))]
        t = np.linspace(0.15 * np.pi, 0.85 * np.pi, 20)
        chain = np.stack([0.46 * np.cos(t), 1.2 + 0.45 * np.sin(t)], axis=1)
        pp.line(chain, fill=metal, width=0.045)
        pp.ellipse(0, 1.7, 0.07, 0.08, fill=metal)


def _ears(pp: _Painter, a: Mapping[str, int], look: Look, g: _Geometry, rng: np.random.Generator) -> None:
    hw = g.half_width_at(0.05)
    for side in (-1, 1):
        x = side * (hw - 0.02)
        pp.ellipse(x, 0.05, 0.13, 0.24, fill=_shade(look.skin, 0.95))
        pp.line([(x + side * 0.03, -0.1), (x + side * 0.06, 0.05), (x + side * 0.03, 0.2)],
                fill=_shade(look.skin, 0.75), width=0.03)
    if a.get("Wearing_Earrings"):
        metal = _METALS[int(rng.integers(len(_METALS)))]
        hoop = rng.random() < 0.5
        for side in (-1, 1):
            x = side * (hw + 0.02)
            if hoop:
                pp.ellipse(x, 0.4, 0.09, 0.1, outline=metal, width=0.04)
            else:
                pp.line([(x, 0.28), (x, 0.42)], fill=metal, width=0.03)
                pp.ellipse(x, 0.46, 0.06, 0.07, fill=metal)


def _face(pp: _Painter, a: Mapping[str, int], look: Look, g: _Geometry) -> np.ndarray:
    outline = g.outline()
    pp.polygon(outline, fill=look.skin)
    # soft shading at the sides and eye sockets: gives the Haar cascade its dark/light bands
    darkness = 1 - sum(look.skin) / 765           # dark skin needs more light on the cheeks
    for side in (-1, 1):
        pp.ellipse(side * g.eye_x, g.eye_y - 0.05, 0.28, 0.18, fill=(25, 15, 12, 85))
        pp.ellipse(side * 0.42, 0.18, 0.24, 0.14, fill=(255, 240, 230, int(25 + 60 * darkness)))
    pp.ellipse(0, -0.72, 0.5, 0.2, fill=(255, 240, 230, int(90 * darkness)))                # forehead sheen
    pp.polygon([(-0.07, -0.2), (0.07, -0.2), (0.05, 0.15), (-0.05, 0.15)], fill=(255, 240, 230, int(90 * darkness)))
    if a.get("Double_Chin"):
        pp.ellipse(0, g.bottom + 0.04, 0.55 * g.fw, 0.22, fill=look.skin)
        t = np.linspace(0.15 * np.pi, 0.85 * np.pi, 16)
        for dy, depth in ((-0.16, 0.2), (0.04, 0.22)):
            pp.line(np.stack([0.5 * g.fw * np.cos(t), g.bottom + dy + depth * np.sin(t)], axis=1),
                    fill=_shade(look.skin, 0.6), width=0.045)
    return outline


def _skin_marks(pp: _Painter, a: Mapping[str, int], look: Look, g: _Geometry, rng: np.random.Generator) -> None:
    line = _rgba(_shade(look.skin, 0.5), 220)
    ex = g.eye_x
    if not a.get("Young"):  # wrinkles: forehead, crow's feet, nasolabial folds, jowls
        for y in (-0.58, -0.7, -0.82):
            pp.line([(-0.45, y + 0.03), (0, y - 0.02), (0.45, y + 0.03)], fill=line, width=0.03)
        for side in (-1, 1):
            x = side * (ex + 0.24)
            for dy in (-0.08, 0.0, 0.08):
                pp.line([(x, g.eye_y + dy * 0.4), (x + side * 0.16, g.eye_y + dy * 1.3)], fill=line, width=0.045)
            pp.line([(side * 0.2, 0.3), (side * 0.4, 0.5), (side * 0.47, 0.78)], fill=line, width=0.065)
            pp.line([(side * 0.6, 0.78), (side * 0.52, 1.05)], fill=line, width=0.055)
            pp.line([(side * (ex - 0.14), g.eye_y + 0.13), (side * (ex + 0.12), g.eye_y + 0.13)], fill=line,
                    width=0.035)
    if not a.get("Attractive"):  # blotchy skin with spots
        for _ in range(3):
            x, y = rng.uniform(-0.6, 0.6), rng.uniform(-0.7, 0.6)
            pp.ellipse(x, y, 0.2, 0.15, fill=_rgba(_mix(look.skin, (150, 50, 40), 0.7), 85))
        for _ in range(int(rng.integers(8, 13))):
            x, y = rng.uniform(-0.72, 0.72), rng.uniform(-0.7, 0.55)
            if abs(y - g.eye_y) < 0.14 and abs(abs(x) - ex) < 0.26:
                continue
            pp.ellipse(x, y, 0.06, 0.06, fill=_rgba(_mix(look.skin, (120, 30, 30), 0.6), 220))
    if a.get("High_Cheekbones"):
        for side in (-1, 1):
            pp.ellipse(side * 0.58, 0.08, 0.2, 0.09, fill=(255, 255, 255, 80))
            pp.line([(side * 0.9, 0.15), (side * 0.6, 0.33), (side * 0.42, 0.42)],
                    fill=_rgba(_shade(look.skin, 0.55), 170), width=0.05)
    if a.get("Rosy_Cheeks"):
        for side in (-1, 1):
            pp.ellipse(side * 0.55, 0.3, 0.18, 0.13, fill=(235, 70, 95, 130))
    if a.get("Bags_Under_Eyes"):  # dark, puffy crescents
        t = np.linspace(0.05 * np.pi, 0.95 * np.pi, 12)
        for side in (-1, 1):
            outer = np.stack([side * ex + 0.2 * np.cos(t), g.eye_y + 0.03 + 0.15 * np.sin(t)], axis=1)
            inner = np.stack([side * ex + 0.17 * np.cos(t), g.eye_y + 0.03 + 0.06 * np.sin(t)], axis=1)[::-1]
            pp.polygon(np.concatenate([outer, inner]), fill=(100, 60, 80, 90))
            pp.line(outer, fill=(90, 50, 70, 200), width=0.04)


def _facial_hair(pp: _Painter, a: Mapping[str, int], look: Look, g: _Geometry, outline: np.ndarray,
                 rng: np.random.Generator) -> None:
    if not any(a.get(k) for k in ("5_o_Clock_Shadow", "Goatee", "Mustache", "Sideburns")) and a.get("No_Beard", 1):
        return
    hair = look.hair
    if sum(hair) > 480:  # very light hair: facial hair reads darker
        hair = _shade(hair, 0.72)
    lower = outline[(outline[:, 1] > 0.15)]          # right side -> chin -> left side
    if a.get("5_o_Clock_Shadow"):
        inner = [(-0.6 * g.fw, 0.2), (-0.4, 0.42), (-0.36, 0.5), (0, 0.45), (0.36, 0.5), (0.4, 0.42),
                 (0.6 * g.fw, 0.2)]
        pp.polygon(np.concatenate([lower, inner]), fill=(50, 55, 70, 75))
        n = 160
        xs, ys = rng.uniform(-g.fw, g.fw, n), rng.uniform(0.25, g.bottom, n)
        for x, y in zip(xs, ys, strict=True):
            if (x / g.fw) ** 2 + (y / g.bottom) ** 2 < 0.9 and not (abs(x) < 0.36 and 0.5 < y < 0.78):
                pp.ellipse(float(x), float(y), 0.013, 0.013, fill=(35, 35, 40, 200))
    if a.get("Sideburns"):
        for side in (-1, 1):
            x0 = side * g.half_width_at(-0.3)
            x1 = side * g.half_width_at(0.35)
            pp.polygon([(x0, -0.45), (x0 - side * 0.2, -0.45), (x1 - side * 0.18, 0.3), (x1, 0.38)], fill=hair)
    if not a.get("No_Beard", 1):
        jaw = lower[lower[:, 1] > 0.35]
        outer = jaw * np.array([1.03, 1.0]) + np.array([0.0, 0.06]) * (jaw[:, 1:2] > 0.8)
        inner = [(-0.8 * g.fw, 0.38), (-0.52, 0.55), (-0.42, 0.72), (-0.3, 0.84), (0, 0.88), (0.3, 0.84),
                 (0.42, 0.72), (0.52, 0.55), (0.8 * g.fw, 0.38)]
        pp.polygon(np.concatenate([outer, inner]), fill=_mix(hair, look.skin, 0.15))
    if a.get("Goatee"):
        b = g.bottom
        pp.polygon([(-0.2, 0.8), (0.2, 0.8), (0.2, b - 0.05), (0.1, b + 0.08), (0, b + 0.11),
                    (-0.1, b + 0.08), (-0.2, b - 0.05)], fill=_shade(hair, 0.75))
    if a.get("Mustache"):
        pp.polygon([(-0.38, 0.6), (-0.22, 0.47), (0, 0.5), (0.22, 0.47), (0.38, 0.6), (0.32, 0.63), (0, 0.57),
                    (-0.32, 0.63)], fill=_shade(hair, 0.8))


def _nose(pp: _Painter, a: Mapping[str, int], look: Look) -> None:
    """Bridge shadow and highlight; a sharp triangular tip (Pointy_Nose) or a round bulb; Big_Nose
    is wider and longer with large dark nostrils."""
    big = 1.7 if a.get("Big_Nose") else 1.0
    edge = _rgba(_shade(look.skin, 0.5), 220)
    w = 0.09 * big
    pp.line([(-0.06, -0.08), (-w, 0.2)], fill=_rgba(_shade(look.skin, 0.65), 170), width=0.035)
    pp.polygon([(0.04, -0.08), (0.08, -0.08), (w + 0.02, 0.22), (w - 0.02, 0.22)], fill=(255, 255, 255, 60))
    if a.get("Pointy_Nose"):
        tip = 0.52 + 0.06 * big
        pp.polygon([(-w - 0.03, 0.16), (w + 0.03, 0.16), (0.015, tip), (-0.015, tip)],
                   fill=_shade(look.skin, 0.9), outline=edge, width=0.045)
        pp.polygon([(-w - 0.03, 0.16), (-0.015, tip), (-0.05, 0.3)], fill=_rgba(_shade(look.skin, 0.4), 150))
    else:
        pp.ellipse(0, 0.3, w + 0.05, 0.1 * big, fill=_shade(look.skin, 0.9), outline=edge, width=0.03)
        pp.ellipse(0.02, 0.27, 0.04, 0.035, fill=(255, 255, 255, 110))
    for side in (-1, 1):
        pp.ellipse(side * (w * 0.85), 0.36, 0.05 * big, 0.03 * big, fill=_rgba(_shade(look.skin, 0.3), 240))


def _eyes(pp: _Painter, a: Mapping[str, int], look: Look, g: _Geometry, rng: np.random.Generator) -> None:
    ry = 0.035 if a.get("Narrow_Eyes") else 0.085
    makeup = bool(a.get("Heavy_Makeup"))
    shadow = _SHADOWS[int(rng.integers(len(_SHADOWS)))]
    brow = _mix(look.hair, (55, 40, 30), 0.45 if sum(look.hair) > 360 else 0.1)
    for side in (-1, 1):
        x, y = side * g.eye_x, g.eye_y
        if makeup:
            pp.ellipse(x, y - 0.08, 0.24, 0.13, fill=_rgba(shadow, 190))
        pp.ellipse(x, y, 0.17, ry, fill=(232, 230, 224))
        pp.ellipse(x, y, 0.085, min(0.085, ry), fill=look.eyes)
        pp.ellipse(x, y, 0.035, min(0.035, ry), fill=(10, 10, 10))
        lid = [(x - 0.18, y + 0.01), (x - 0.09, y - ry), (x + 0.09, y - ry), (x + 0.18, y + 0.01)]
        pp.line(lid, fill=(25, 20, 20), width=0.05 if makeup else 0.025)
        if makeup:
            pp.line([(x + side * 0.17, y), (x + side * 0.25, y - 0.06)], fill=(15, 15, 15), width=0.035)
        if not a.get("Male"):  # eyelashes
            for dx in (0.06, 0.11, 0.16):
                pp.line([(x + side * dx, y - ry * 0.9), (x + side * (dx + 0.04), y - ry - 0.05)],
                        fill=(20, 15, 15), width=0.02)
        # eyebrows: arched (peaked) or flat, bushy (thick) or thin
        inner, outer = side * 0.14, side * (g.eye_x + 0.23)
        mid = (inner + outer) / 2
        if a.get("Arched_Eyebrows"):
            path = [(inner, -0.34), (mid, -0.52), (outer, -0.3)]
        else:
            path = [(inner, -0.37), (mid, -0.39), (outer, -0.37)]
        pp.line(path, fill=brow, width=(0.12 if a.get("Bushy_Eyebrows") else 0.05) + (0.015 if a.get("Male") else 0))


def _mouth(pp: _Painter, a: Mapping[str, int], look: Look, rng: np.random.Generator) -> None:
    """Lips around a centre line: a smile lifts the corners (plus smile lines), an open mouth shows a
    dark gap (teeth when smiling), Big_Lips doubles the lip height, lipstick paints them red."""
    smile, open_ = bool(a.get("Smiling")), bool(a.get("Mouth_Slightly_Open"))
    lip = (_LIPSTICKS[int(rng.integers(len(_LIPSTICKS)))] if a.get("Wearing_Lipstick")
           else _mix(_shade(look.skin, 0.78), (150, 80, 80), 0.3))
    y0, mw = 0.68, (0.4 if smile else 0.29) + (0.05 if a.get("Big_Lips") else 0.0)
    lift = 0.17 if smile else -0.02
    gap = (0.22 if smile else 0.12) if open_ else 0.0
    thick = 0.125 if a.get("Big_Lips") else 0.045
    xs = np.linspace(-mw, mw, 17)
    q = 1 - (xs / mw) ** 2
    mid = y0 - lift * (xs / mw) ** 2
    bottom = mid + gap * q
    top_edge = np.stack([xs, mid - thick * np.sqrt(q) - 0.012], axis=1)
    low_edge = np.stack([xs, bottom + thick * 1.2 * np.sqrt(q) + 0.012], axis=1)
    mid_line, bottom_line = np.stack([xs, mid], axis=1), np.stack([xs, bottom], axis=1)
    pp.polygon(np.concatenate([top_edge, mid_line[::-1]]), fill=lip)
    pp.polygon(np.concatenate([bottom_line, low_edge[::-1]]), fill=lip)
    if open_:
        pp.polygon(np.concatenate([mid_line, bottom_line[::-1]]), fill=(60, 15, 20))
        if smile:
            teeth = np.stack([xs, mid + 0.45 * gap * q], axis=1)
            pp.polygon(np.concatenate([mid_line, teeth[::-1]]), fill=(250, 250, 245))
    pp.line(mid_line, fill=(60, 25, 25), width=0.035)
    if smile:
        for side in (-1, 1):
            pp.line([(side * (mw + 0.02), y0 - lift - 0.1), (side * (mw + 0.07), y0 - lift + 0.02),
                     (side * (mw + 0.02), y0 - lift + 0.12)], fill=_rgba(_shade(look.skin, 0.5), 200), width=0.035)


def _glasses(pp: _Painter, look: Look, g: _Geometry) -> None:
    frame = (18, 18, 22)
    for side in (-1, 1):
        x = side * g.eye_x
        if look.round_glasses:
            pp.ellipse(x, g.eye_y, 0.22, 0.2, fill=(40, 50, 70, 45), outline=frame, width=0.05)
        else:
            pp.rounded_rect(x - 0.26, g.eye_y - 0.15, x + 0.26, g.eye_y + 0.15, 0.06, outline=frame, width=0.055,
                            fill=(40, 50, 70, 45))
        edge = side * (g.eye_x + (0.22 if look.round_glasses else 0.26))
        pp.line([(edge, g.eye_y - 0.05), (side * g.half_width_at(-0.1), -0.1)], fill=frame, width=0.045)
    inner = g.eye_x - (0.22 if look.round_glasses else 0.26)
    pp.line([(-inner, g.eye_y - 0.04), (0, g.eye_y - 0.07), (inner, g.eye_y - 0.04)], fill=frame, width=0.045)


def _hat(pp: _Painter, scene: Scene, g: _Geometry) -> None:
    c = scene.accent
    pp.rounded_rect(-g.fw - 0.12, -g.top - 0.42, g.fw + 0.12, -0.7, 0.25, outline=_shade(c, 0.7), width=0.03,
                    fill=c)
    pp.polygon([(-g.fw - 0.12, -0.9), (g.fw + 0.12, -0.9), (g.fw + 0.12, -0.78), (-g.fw - 0.12, -0.78)],
               fill=_shade(c, 0.6))
    pp.rounded_rect(-g.fw - 0.38, -0.78, g.fw + 0.38, -0.64, 0.06, outline=_shade(c, 0.6), width=0.02,
                    fill=_shade(c, 0.85))


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance, roughly Gaussian noise (sum of two uniform bytes): 5x faster than normal()."""
    size = int(np.prod(shape))
    a = np.frombuffer(rng.bytes(2 * size), dtype=np.uint8).astype(np.float32).reshape(2, *shape)
    return (a[0] + a[1] - 255.0) * np.float32(1 / 104.1)


def _finish(img: Image.Image, scene: Scene, blurry: bool, rng: np.random.Generator) -> Image.Image:
    """Blur, lighting and sensor noise on the output-size image."""
    radius = scene.unit * (float(rng.uniform(0.055, 0.08)) if blurry else scene.soften)
    if radius > 0:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    w, h = img.size
    # out = ((in - 128) * contrast + 128) * brightness * ramp + noise, as one multiply-add
    ramp = scene.brightness * (1 + scene.light_slope * np.linspace(-1, 1, w, dtype=np.float32))[:, None]
    gain, offset = scene.contrast * ramp, 128 * (1 - scene.contrast) * ramp + 0.5
    arr = np.asarray(img, dtype=np.float32) * gain
    arr += offset
    arr += _noise(rng, arr.shape) * np.float32(scene.noise)
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def render_face(attrs: Mapping[str, int], look: Look, scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Draw one face. ``attrs`` maps CelebA attribute names to 0/1 (missing = 0, except No_Beard = 1).

    What each label looks like: hair colour and Pale_Skin come with the ``Look`` (see
    ``random_look``); Bald: no hair, shiny scalp; Receding_Hairline: high M-shaped hairline; Bangs:
    jagged fringe; Wavy_Hair / Straight_Hair: rippled or straight strands and outline; Wearing_Hat:
    a hat; Eyeglasses: dark frames; Narrow_Eyes: slit eyes; Arched / Bushy_Eyebrows: peaked / thick
    brows; Bags_Under_Eyes: dark crescents; Heavy_Makeup: eye shadow and liner; Big_Nose /
    Pointy_Nose: wide nose / sharp triangular tip; Smiling: lifted corners and smile lines;
    Mouth_Slightly_Open: dark gap; Big_Lips: thick lips; Wearing_Lipstick: red lips; High_Cheekbones:
    cheek highlight and shadow; Rosy_Cheeks: pink cheeks; No_Beard = 0: full beard; Goatee,
    Mustache, Sideburns, 5_o_Clock_Shadow: the hair or stubble; Chubby: wider, squarer face;
    Double_Chin: second chin; Oval_Face: long egg-shaped face; Male: squarer jaw, thicker neck and
    brows, no eyelashes; Young = 0: wrinkles; Attractive = 0: blotchy, spotty skin; Wearing_Earrings,
    Wearing_Necklace, Wearing_Necktie: the jewellery or tie; Blurry: strong Gaussian blur.
    """
    w, h = scene.size
    s = SUPERSAMPLE
    img = Image.new("RGB", (w * s, h * s), scene.background)
    pp = _Painter(img, (scene.center[0] * s, scene.center[1] * s), scene.unit * s, scene.angle)
    g = _geometry(attrs, look)

    _hair_back(pp, attrs, look, g)
    _body(pp, attrs, look, scene, rng)
    _ears(pp, attrs, look, g, rng)
    outline = _face(pp, attrs, look, g)
    _skin_marks(pp, attrs, look, g, rng)
    _facial_hair(pp, attrs, look, g, outline, rng)
    _nose(pp, attrs, look)
    _eyes(pp, attrs, look, g, rng)
    _mouth(pp, attrs, look, rng)
    _hair_front(pp, attrs, look, g)
    if look.mole is not None:
        pp.ellipse(look.mole[0], look.mole[1], 0.045, 0.045, fill=(60, 35, 25))
    if attrs.get("Eyeglasses"):
        _glasses(pp, look, g)
    if attrs.get("Wearing_Hat"):
        _hat(pp, scene, g)

    img = img.reduce(s)
    return _finish(img, scene, bool(attrs.get("Blurry")), rng)
