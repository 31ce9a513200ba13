"""Regenerate edgedl/data/calib/: the real photographs edgedl calibrates with when given none.

Takes colour photographs bundled with scikit-image (read from its installed data folder, never
downloaded) whose scikit-image docstrings state that they may be redistributed freely (public
domain or CC0), shrinks each so its longer side is at most 320 px, saves it as JPEG quality 90,
and writes LICENSES.md from the table below. Before writing, it checks that each docstring
still carries the licence wording quoted here, so a scikit-image change cannot slip an
unlicensed photograph in.

    python tools/make_calib_photos.py

Left out on purpose: ``stereo_motorcycle`` (its docstring names no licence) and
``immunohistochemistry`` (only "no known copyright restrictions", no licence or dedication).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import cv2

CALIB_DIR = Path(__file__).resolve().parent.parent / "edgedl" / "data" / "calib"
MAX_SIDE = 320
JPEG_QUALITY = 90
SIZE_BUDGET = 400 * 1024


@dataclass(frozen=True)
class Photo:
    function: str  # skimage.data function whose docstring states the licence
    source_file: str  # file in skimage/data/
    title: str
    creator: str
    origin: str
    licence: str  # quoted from the docstring; must appear there verbatim (whitespace aside)
    licence_link: str = ""  # where the docstring points for the licence statement


PHOTOS = (
    Photo("astronaut", "astronaut.png", "Eileen Collins, NASA astronaut", "NASA",
          "NASA Great Images database, https://flic.kr/p/r9qvLn",
          "No known copyright restrictions, released into the public domain."),
    Photo("chelsea", "chelsea.png", "Chelsea the cat", "Stefan van der Walt",
          "scikit-image sample data",
          "No copyright restrictions. CC0 by the photographer (Stefan van der Walt)."),
    Photo("coffee", "coffee.png", "Coffee cup (courtesy of Pikolo Espresso Bar)", "Rachel Michetti",
          "scikit-image sample data",
          "No copyright restrictions. CC0 by the photographer (Rachel Michetti)."),
    Photo("rocket", "rocket.jpg", "Launch of DSCOVR on Falcon 9", "SpaceX",
          "SpaceX Photos on Flickr, https://www.flickr.com/photos/spacexphotos/16511594820/",
          "The image was captured by SpaceX and `released in the public domain",
          "http://arstechnica.com/tech-policy/2015/03/elon-musk-puts-spacex-photos-into-the-public-domain/"),
    Photo("hubble_deep_field", "hubble_deep_field.jpg", "Hubble eXtreme Deep Field", "NASA",
          "HubbleSite, http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/",
          "The image was captured by NASA and `may be freely used in the public domain",
          "http://www.nasa.gov/audience/formedia/features/MP_Photo_Guidelines.html"),
    Photo("retina", "retina.jpg", "Fundus photograph of a normal left eye (human retina)", "Mikael Häggström",
          "Wikimedia Commons, https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg",
          "This file is made available under the Creative Commons CC0 1.0 Universal Public Domain Dedication."),
)


def _words(text: str) -> str:
    return " ".join(text.split())


def check_licence(photo: Photo) -> None:
    """Fail unless the skimage.data docstring for ``photo`` still states the quoted licence."""
    import skimage.data

    doc = inspect.getdoc(getattr(skimage.data, photo.function)) or ""
    if _words(photo.licence) not in _words(doc):
        raise SystemExit(f"skimage.data.{photo.function}'s docstring no longer says {photo.licence!r}; "
                         "check its licence before shipping the photograph")


def shrink(image, max_side: int = MAX_SIDE):
    """Resize (area interpolation) so the longer side is at most ``max_side``."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def licences_markdown(sizes: dict[str, tuple[int, int]]) -> str:
    import skimage

    lines = [
        "# Calibration photographs",
        "",
        "Real colour photographs that edgedl uses to calibrate INT8 models when no calibration data is",
        "given. Each is a copy, shrunk to at most 320 px on its longer side and re-encoded as JPEG",
        f"(quality {JPEG_QUALITY}), of a sample image bundled with scikit-image {skimage.__version__}",
        "(`skimage/data/`). The licence column quotes the `skimage.data` function's docstring.",
        "Regenerate with `python tools/make_calib_photos.py`.",
        "",
        "| File | Size | Subject | Creator | Original source | Licence (as stated by scikit-image) |",
        "|---|---|---|---|---|---|",
    ]
    for photo in PHOTOS:
        w, h = sizes[photo.function]
        licence = photo.licence.replace("`", "") + (f" ({photo.licence_link})" if photo.licence_link else "")
        lines.append(f"| `{photo.function}.jpg` | {w}x{h} | {photo.title} (`skimage.data.{photo.function}`) | "
                     f"{photo.creator} | {photo.origin} | {licence} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import skimage.data

    source_dir = Path(skimage.data.__file__).resolve().parent
    CALIB_DIR.mkdir(parents=True, exist_ok=True)
    sizes, total = {}, 0
    for photo in PHOTOS:
        check_licence(photo)
        image = cv2.imread(str(source_dir / photo.source_file), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"{source_dir / photo.source_file} is missing or unreadable")
        image = shrink(image)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise SystemExit(f"could not encode {photo.function} as JPEG")
        staged = CALIB_DIR / f".{photo.function}.jpg.tmp"
        staged.write_bytes(encoded.tobytes())
        staged.replace(CALIB_DIR / f"{photo.function}.jpg")
        sizes[photo.function] = (image.shape[1], image.shape[0])
        total += encoded.size
    if total > SIZE_BUDGET:
        raise SystemExit(f"calibration photos total {total} bytes, over the {SIZE_BUDGET}-byte budget")
    (CALIB_DIR / "LICENSES.md").write_text(licences_markdown(sizes), encoding="utf-8")
    print(f"wrote {len(PHOTOS)} photographs ({total / 1024:.0f} KiB) and LICENSES.md to {CALIB_DIR}")


if __name__ == "__main__":
    main()
