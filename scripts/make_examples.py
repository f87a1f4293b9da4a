"""Make the example images in examples/: free-to-redistribute inputs for ``artstyle predict``.

- human_*.jpg: public-domain photos bundled with matplotlib (Grace Hopper, US Navy) and
  scikit-image (astronaut Eileen Collins, NASA).
- cartoon_*.png and anime_*.png: drawn here with Pillow, so they carry no third-party rights.

Run from the repository root: ``python scripts/make_examples.py`` (needs matplotlib; the
astronaut also needs scikit-image and is skipped without it).
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parents[1] / "examples"
SIZE = 512  # final size; everything is drawn at SCALE x and scaled down for smooth edges
SCALE = 4
BLACK = (20, 16, 18)


# --- drawing helpers (coordinates in final 512 px units) --------------------------------------


def _s(points):
    return [(x * SCALE, y * SCALE) for x, y in points]


def bezier(*controls, steps=24):
    """Points on a Bezier curve through the given control points (any degree)."""
    out = []
    for k in range(steps + 1):
        t = k / steps
        pts = list(controls)
        while len(pts) > 1:
            pts = [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for a, b in zip(pts, pts[1:])]
        out.append(pts[0])
    return out


def ellipse_points(cx, cy, rx, ry, start=0.0, end=360.0, steps=64):
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in (start + (end - start) * k / steps for k in range(steps + 1))
    ]


class Canvas:
    def __init__(self, background):
        self.image = Image.new("RGB", (SIZE * SCALE, SIZE * SCALE), background)
        self.draw = ImageDraw.Draw(self.image)

    def polygon(self, points, fill=None, outline=None, width=0.0):
        self.draw.polygon(_s(points), fill=fill)
        if outline and width:
            self.line(list(points) + [points[0]], outline, width)

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=0.0):
        box = [(cx - rx) * SCALE, (cy - ry) * SCALE, (cx + rx) * SCALE, (cy + ry) * SCALE]
        self.draw.ellipse(box, fill=fill, outline=outline, width=int(width * SCALE))

    def line(self, points, fill, width):
        self.draw.line(_s(points), fill=fill, width=max(1, int(width * SCALE)), joint="curve")
        r = width * SCALE / 2  # round caps
        for x, y in (points[0], points[-1]):
            self.draw.ellipse([x * SCALE - r, y * SCALE - r, x * SCALE + r, y * SCALE + r], fill=fill)

    def paste_clipped(self, layer_painter, clip_points):
        """Paint on a transparent layer, keep only what falls inside ``clip_points``."""
        layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        layer_painter(ImageDraw.Draw(layer))
        mask = Image.new("L", self.image.size, 0)
        ImageDraw.Draw(mask).polygon(_s(clip_points), fill=255)
        layer.putalpha(ImageChops.multiply(layer.getchannel("A"), mask))
        self.image.paste(layer, (0, 0), layer)

    def vertical_gradient(self, top, bottom):
        w, h = self.image.size
        for y in range(h):
            t = y / (h - 1)
            self.draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))

    def save(self, path: Path):
        self.image.resize((SIZE, SIZE), Image.LANCZOS).save(path, optimize=True)
        print(f"wrote {path.relative_to(OUT.parent)} ({path.stat().st_size / 1024:.0f} KB)")


def shade(colour, factor):
    return tuple(max(0, min(255, int(c * factor))) for c in colour)


def mix(a, b, t):
    return tuple(int(x + (y - x) * t) for x, y in zip(a, b))


# --- anime: large glossy eyes, small mouth, pointed chin, spiky cel-shaded hair ---------------

SKIN = (255, 226, 208)
SKIN_SHADOW = (240, 184, 170)
LINE = (92, 52, 48)  # anime line art is dark brown, not black


def face_outline(chin_y=398, cheek_w=104):
    top = ellipse_points(256, 232, cheek_w, 122, 180, 360, 40)
    jaw_right = bezier((256 + cheek_w, 240), (256 + cheek_w, 318), (300, 372), (256, chin_y), steps=20)
    jaw_left = bezier((256, chin_y), (212, 372), (256 - cheek_w, 318), (256 - cheek_w, 240), steps=20)
    return top + jaw_right[1:] + jaw_left[1:]


def anime_eye(c: Canvas, cx, cy, iris, flip=False, scale=1.0):
    d = -1 if flip else 1  # outer corner is to the left for the left eye
    w, h = 34 * scale, 38 * scale
    white = bezier(
        (cx - d * w, cy - h * 0.55),
        (cx - d * w * 0.2, cy - h * 1.25),
        (cx + d * w * 0.95, cy - h * 0.7),
        (cx + d * w, cy - h * 0.2),
        steps=20,
    )
    white += bezier(
        (cx + d * w, cy - h * 0.2),
        (cx + d * w * 0.9, cy + h * 1.05),
        (cx - d * w * 0.9, cy + h * 1.0),
        (cx - d * w, cy - h * 0.55),
        steps=20,
    )[1:]
    c.polygon(white, fill=(255, 255, 255))

    def paint_iris(draw):
        S = SCALE
        rx, ry = 22 * scale, 31 * scale
        icx, icy = cx + d * 2, cy + 4 * scale
        draw.ellipse([(icx - rx) * S, (icy - ry) * S, (icx + rx) * S, (icy + ry) * S], fill=shade(iris, 0.45))
        for k in range(12):  # glossy gradient: dark at the top, bright at the bottom
            t = k / 11
            col = mix(shade(iris, 0.55), mix(iris, (255, 255, 255), 0.35), t)
            ry_k, off = ry * (1 - 0.55 * t), ry * 0.55 * t
            draw.ellipse(
                [
                    (icx - rx * (1 - 0.25 * t)) * S,
                    (icy - ry_k + off) * S,
                    (icx + rx * (1 - 0.25 * t)) * S,
                    (icy + ry_k + off) * S,
                ],
                fill=col,
            )
        draw.ellipse(
            [(icx - 10 * scale) * S, (icy - 14 * scale) * S, (icx + 10 * scale) * S, (icy + 12 * scale) * S],
            fill=shade(iris, 0.25),
        )
        draw.ellipse(
            [(icx - rx) * S, (icy - ry) * S, (icx + rx) * S, (icy + ry) * S],
            outline=shade(iris, 0.3),
            width=int(2.2 * S),
        )
        # shadow of the upper lid across the top of the eye
        draw.rectangle([(cx - 40) * S, (cy - 60) * S, (cx + 40) * S, (cy - h * 0.62) * S], fill=(150, 120, 140, 150))
        for hx, hy, hr in (
            (icx - 8 * scale, icy - 13 * scale, 8.5 * scale),
            (icx + 9 * scale, icy + 12 * scale, 3.6 * scale),
        ):
            draw.ellipse(
                [(hx - hr) * S, (hy - hr * 1.15) * S, (hx + hr) * S, (hy + hr * 1.15) * S], fill=(255, 255, 255)
            )

    c.paste_clipped(paint_iris, white)
    # thick upper lash line with a flick at the outer corner, thin lower lash
    lash = bezier(
        (cx - d * (w + 7), cy - h * 0.35),
        (cx - d * w * 0.3, cy - h * 1.32),
        (cx + d * w * 0.9, cy - h * 0.85),
        (cx + d * (w + 2), cy - h * 0.25),
        steps=24,
    )
    c.line(lash, (40, 24, 30), 6.5 * scale)
    c.line([(cx - d * (w + 7), cy - h * 0.35), (cx - d * (w + 14), cy - h * 0.62)], (40, 24, 30), 4 * scale)
    c.line(
        bezier((cx - d * w * 0.55, cy + h * 0.88), (cx, cy + h * 1.0), (cx + d * w * 0.7, cy + h * 0.78), steps=10),
        LINE,
        2.0 * scale,
    )


def spiky_fringe(tips, width=140):
    """Top of the skull plus a zig-zag of bangs; ``tips`` are (x, y) points of the spikes."""
    top = ellipse_points(256, 228, width, 134, 180, 360, 40)
    # walk from right to left: tip, then the notch between tips (higher up)
    pts = []
    ordered = sorted(tips, key=lambda p: -p[0])
    for k, (x, y) in enumerate(ordered):
        pts.append((x, y))
        if k + 1 < len(ordered):
            nx, ny = ordered[k + 1]
            pts.append(((x + nx) / 2, min(y, ny) - (abs(x - nx) * 0.9)))
    return top + [(256 + width, 226)] + pts + [(256 - width, 226)]


def anime_face(path: Path, *, hair, eyes, long_hair: bool, background, mouth_open: bool):
    c = Canvas(background[0])
    c.vertical_gradient(*background)
    hair_dark, hair_light = shade(hair, 0.72), mix(hair, (255, 255, 255), 0.45)
    hair_line = shade(hair, 0.45)

    # back hair (behind the face)
    if long_hair:
        back = (
            ellipse_points(256, 226, 142, 132, 180, 360, 40)
            + [(398, 260), (410, 400), (392, 486), (350, 470), (330, 380)]
            + [(182, 380), (162, 470), (120, 486), (102, 400), (114, 260)]
        )
        c.polygon(back, fill=hair_dark, outline=hair_line, width=2.5)
    else:
        spikes = [
            (102, 214),
            (120, 150),
            (96, 118),
            (150, 104),
            (146, 64),
            (200, 80),
            (222, 36),
            (262, 72),
            (300, 34),
            (318, 84),
            (372, 60),
            (364, 108),
            (420, 112),
            (392, 152),
            (414, 208),
            (384, 236),
            (128, 236),
        ]
        c.polygon(spikes, fill=hair, outline=hair_line, width=2.5)
        c.polygon(
            [(300, 34), (318, 84), (372, 60), (364, 108), (420, 112), (392, 152), (414, 208), (330, 150)],
            fill=hair_dark,
        )

    # neck, shoulders and collar
    c.polygon([(222, 350), (290, 350), (292, 452), (220, 452)], fill=SKIN, outline=LINE, width=2.2)
    c.polygon(bezier((222, 372), (256, 418), (290, 372), steps=12) + [(290, 352), (222, 352)], fill=SKIN_SHADOW)
    shirt = [(96, 512), (118, 468), (170, 442), (224, 430), (256, 470), (288, 430), (342, 442), (394, 468), (416, 512)]
    c.polygon(shirt, fill=(48, 58, 104), outline=(24, 28, 52), width=2.5)
    c.polygon(
        [(224, 430), (256, 470), (288, 430), (312, 440), (256, 512), (200, 440)],
        fill=(250, 250, 252),
        outline=(120, 120, 140),
        width=2,
    )
    c.polygon([(246, 486), (266, 486), (276, 512), (236, 512)], fill=(214, 40, 60))

    # face with cel shading under the fringe and along one side
    outline = face_outline()
    c.polygon(outline, fill=SKIN)
    c.paste_clipped(
        lambda d: d.polygon(
            _s([(300, 150), (372, 150), (372, 420), (330, 330), (352, 262)]), fill=SKIN_SHADOW + (255,)
        ),
        outline,
    )
    c.line(outline + [outline[0]], LINE, 2.4)
    # ears
    for sx in (-1, 1):
        ear = bezier(
            (256 + sx * 102, 262), (256 + sx * 126, 250), (256 + sx * 122, 300), (256 + sx * 100, 312), steps=12
        )
        c.polygon(ear, fill=SKIN, outline=LINE, width=2)

    # eyes, brows, nose, mouth, blush
    anime_eye(c, 206, 290, eyes, flip=False, scale=1.12)
    anime_eye(c, 306, 290, eyes, flip=True, scale=1.12)
    for sx in (-1, 1):
        c.line(bezier((256 + sx * 20, 232), (256 + sx * 48, 222), (256 + sx * 80, 228), steps=10), hair_line, 3.2)
    c.line([(258, 326), (254, 334), (259, 336)], shade(SKIN_SHADOW, 0.85), 2.2)
    if mouth_open:
        mouth = bezier((240, 356), (256, 350), (272, 356), steps=8) + bezier(
            (272, 356), (266, 374), (246, 374), (240, 356), steps=10
        )
        c.polygon(mouth, fill=(170, 50, 64), outline=LINE, width=2)
        c.polygon(bezier((246, 368), (256, 360), (266, 368), steps=8) + [(262, 372), (250, 372)], fill=(240, 120, 130))
    else:
        c.line(bezier((244, 358), (256, 364), (268, 358), steps=8), LINE, 2.6)
    for sx in (-1, 1):
        blush = Image.new("RGBA", c.image.size, (0, 0, 0, 0))
        ImageDraw.Draw(blush).ellipse(
            [(256 + sx * 62 - 20) * SCALE, (336 - 8) * SCALE, (256 + sx * 62 + 20) * SCALE, (336 + 8) * SCALE],
            fill=(255, 120, 140, 110),
        )
        blush = blush.filter(ImageFilter.GaussianBlur(6 * SCALE))
        c.image.paste(blush, (0, 0), blush)
        for k in range(3):
            x = 256 + sx * 62 - 10 + k * 9
            c.line([(x + 3, 330), (x - 2, 341)], (236, 120, 130), 1.6)

    # front hair: spiky fringe, darker cel-shade spikes, a glossy highlight ring
    tips = [(150, 250), (176, 214), (202, 252), (232, 214), (258, 246), (288, 206), (318, 248), (344, 218), (366, 258)]
    fringe = spiky_fringe(tips)
    c.polygon(fringe, fill=hair)
    c.paste_clipped(
        lambda d: [
            d.polygon(_s(p), fill=hair_dark + (255,))
            for p in (
                [(176, 214), (190, 150), (202, 252)],
                [(288, 206), (300, 140), (318, 248)],
                [(344, 218), (352, 160), (366, 258)],
                [(232, 214), (244, 170), (258, 246)],
            )
        ],
        fringe,
    )
    c.paste_clipped(
        lambda d: d.line(
            _s(bezier((160, 150), (210, 128), (260, 150), (300, 132), (352, 156), steps=30)),
            fill=hair_light + (255,),
            width=int(9 * SCALE),
        ),
        fringe,
    )
    c.line(fringe[40:], hair_line, 2.5)  # outline the zig-zag only: the crown merges with the back hair
    # side locks framing the face down to the jaw
    for sx in (-1, 1):
        lock = [
            (256 + sx * 112, 200),
            (256 + sx * 126, 300),
            (256 + sx * 114, 390 if long_hair else 320),
            (256 + sx * 98, 300),
            (256 + sx * 92, 236),
        ]
        c.polygon(lock, fill=hair, outline=hair_line, width=2.3)
        c.polygon(
            [(256 + sx * 112, 230), (256 + sx * 120, 300), (256 + sx * 110, 350 if long_hair else 300)], fill=hair_dark
        )
    c.save(path)


# --- Western cartoon: thick black outlines, flat saturated fills, simple round eyes -----------


def cartoon_kid(path: Path):
    c = Canvas((86, 190, 255))
    c.polygon([(0, 420), (512, 396), (512, 512), (0, 512)], fill=(88, 196, 64), outline=BLACK, width=6)
    c.ellipse(440, 70, 40, 40, fill=(255, 222, 40), outline=BLACK, width=5)
    skin, ink = (255, 200, 150), BLACK
    # body and neck
    c.polygon(
        [(150, 512), (172, 400), (220, 376), (292, 376), (340, 400), (362, 512)],
        fill=(232, 34, 40),
        outline=ink,
        width=7,
    )
    c.polygon([(226, 340), (286, 340), (284, 384), (228, 384)], fill=skin, outline=ink, width=7)
    c.polygon(bezier((206, 378), (256, 430), (306, 378), steps=14), fill=skin, outline=ink, width=6)
    # ears, head
    for sx in (-1, 1):
        c.ellipse(256 + sx * 128, 232, 26, 32, fill=skin, outline=ink, width=7)
        c.ellipse(256 + sx * 128, 232, 10, 14, fill=(240, 160, 120))
    c.ellipse(256, 220, 128, 136, fill=skin, outline=ink, width=8)
    # hair: flat brown tufts
    hair = [
        (140, 170),
        (150, 110),
        (130, 98),
        (182, 82),
        (186, 52),
        (230, 72),
        (256, 36),
        (284, 70),
        (328, 52),
        (330, 86),
        (382, 96),
        (364, 116),
        (374, 170),
        (330, 132),
        (290, 148),
        (250, 126),
        (206, 148),
        (170, 134),
    ]
    c.polygon(hair, fill=(150, 82, 30), outline=ink, width=7)
    # eyes: big white circles, black dots looking to the side
    for sx in (-1, 1):
        c.ellipse(256 + sx * 42, 196, 40, 46, fill=(255, 255, 255), outline=ink, width=7)
        c.ellipse(256 + sx * 42 + 10, 204, 13, 15, fill=ink)
        c.ellipse(256 + sx * 42 + 14, 198, 4, 4, fill=(255, 255, 255))
        c.line(bezier((256 + sx * 16, 138), (256 + sx * 44, 126), (256 + sx * 72, 140), steps=10), ink, 7)
    # nose, mouth, freckles
    c.ellipse(256, 252, 20, 16, fill=(246, 150, 110), outline=ink, width=6)
    mouth = bezier((192, 284), (256, 300), (320, 284), steps=16) + bezier(
        (320, 284), (300, 352), (212, 352), (192, 284), steps=20
    )
    c.polygon(mouth, fill=(140, 20, 40), outline=ink, width=7)
    c.paste_clipped(lambda d: d.ellipse(_s_box(256, 346, 40, 22), fill=(255, 110, 130, 255)), mouth)
    c.paste_clipped(
        lambda d: d.polygon(_s([(196, 280), (316, 280), (310, 302), (202, 302)]), fill=(255, 255, 255, 255)), mouth
    )
    c.line(mouth + [mouth[0]], ink, 7)
    for x, y in ((176, 262), (190, 276), (166, 280), (336, 262), (322, 276), (346, 280)):
        c.ellipse(x, y, 3.5, 3.5, fill=(200, 100, 60))
    c.save(path)


def _s_box(cx, cy, rx, ry):
    return [(cx - rx) * SCALE, (cy - ry) * SCALE, (cx + rx) * SCALE, (cy + ry) * SCALE]


def cartoon_cat(path: Path):
    c = Canvas((255, 236, 90))
    for k in range(0, 512, 64):  # flat comic-book stripes in the background
        c.polygon([(k, 0), (k + 32, 0), (k - 200, 512), (k - 232, 512)], fill=(255, 214, 60))
    fur, light, ink = (255, 140, 26), (255, 236, 200), BLACK
    # body and tail
    c.polygon(bezier((140, 512), (140, 270), (372, 270), (372, 512), steps=24), fill=fur, outline=ink, width=8)
    c.ellipse(256, 468, 64, 56, fill=light, outline=ink, width=6)
    # ears
    for sx in (-1, 1):
        c.polygon([(256 + sx * 150, 90), (256 + sx * 128, 230), (256 + sx * 40, 150)], fill=fur, outline=ink, width=8)
        c.polygon([(256 + sx * 134, 120), (256 + sx * 120, 200), (256 + sx * 66, 156)], fill=(255, 150, 170))
    # head
    head = ellipse_points(256, 236, 150, 124, 0, 360, 80)
    c.polygon(head, fill=fur)
    c.paste_clipped(
        lambda d: [
            d.polygon(_s(p), fill=(214, 96, 10, 255))
            for p in (
                [(226, 112), (256, 170), (286, 112)],
                [(150, 170), (190, 200), (130, 214)],
                [(362, 170), (322, 200), (382, 214)],
            )
        ],
        head,
    )
    c.line(head + [head[0]], ink, 8)
    c.ellipse(256, 300, 78, 52, fill=light, outline=ink, width=6)
    # eyes: round, big, simple
    for sx in (-1, 1):
        c.ellipse(256 + sx * 58, 222, 38, 42, fill=(255, 255, 255), outline=ink, width=7)
        c.ellipse(256 + sx * 58 - sx * 4, 230, 16, 20, fill=(40, 180, 60), outline=ink, width=3)
        c.ellipse(256 + sx * 58 - sx * 4, 232, 7, 12, fill=ink)
        c.ellipse(256 + sx * 58 - sx * 4 - 5, 222, 5, 5, fill=(255, 255, 255))
    # nose, mouth, whiskers
    c.polygon([(238, 272), (274, 272), (256, 292)], fill=(240, 80, 120), outline=ink, width=5)
    c.line(bezier((256, 292), (256, 316), (226, 318), (216, 302), steps=12), ink, 6)
    c.line(bezier((256, 292), (256, 316), (286, 318), (296, 302), steps=12), ink, 6)
    for sx in (-1, 1):
        for dy in (-10, 8):
            c.line([(256 + sx * 100, 296 + dy), (256 + sx * 190, 284 + dy * 2.2)], ink, 4.5)
    c.save(path)


# --- public-domain photos ----------------------------------------------------------------------


def human_photos():
    import matplotlib.cbook

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        im.convert("RGB").save(OUT / "human_grace_hopper.jpg", quality=88, optimize=True)
    print("wrote examples/human_grace_hopper.jpg")
    try:
        from skimage import data as skimage_data
    except ImportError:
        print("scikit-image not installed: skipped examples/human_astronaut.jpg")
        return
    Image.fromarray(skimage_data.astronaut()).save(OUT / "human_astronaut.jpg", quality=88, optimize=True)
    print("wrote examples/human_astronaut.jpg")


def main():
    OUT.mkdir(exist_ok=True)
    human_photos()
    cartoon_kid(OUT / "cartoon_kid.png")
    cartoon_cat(OUT / "cartoon_cat.png")
    anime_face(
        OUT / "anime_girl.png",
        hair=(236, 120, 170),
        eyes=(120, 70, 200),
        long_hair=True,
        background=((255, 240, 246), (214, 226, 255)),
        mouth_open=False,
    )
    anime_face(
        OUT / "anime_boy.png",
        hair=(60, 90, 180),
        eyes=(40, 150, 110),
        long_hair=False,
        background=((226, 246, 255), (255, 236, 214)),
        mouth_open=True,
    )


if __name__ == "__main__":
    main()
