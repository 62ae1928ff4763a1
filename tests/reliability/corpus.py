"""A hostile-upload corpus, built by code (nothing binary is checked in).

Each ``Specimen`` is bytes plus the file name the client claims, and whether any
decent server must refuse it (``expect="refuse"``) or must take it (``"accept"``: a
valid picture with something odd about it: appended HTML, thousands of frames, a
huge EXIF block, a name with ``../``). Files are small on disk; the bombs are small compressed streams.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw


@dataclass(frozen=True)
class Specimen:
    name: str  # test id
    data: bytes
    filename: str | bytes = "upload.jpg"
    expect: str = "refuse"  # "refuse": never an image; "accept": a valid picture; "either": refusing is fine too

    @property
    def refuse(self) -> bool:
        return self.expect == "refuse"


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def drawing(size=(120, 160), mode="RGB") -> Image.Image:
    """A picture that is also a usable sketch: a dark outline on white."""
    img = Image.new("RGB", size, "white")
    w, h = size
    ImageDraw.Draw(img).rectangle([w * 0.2, h * 0.15, w * 0.8, h * 0.85], outline="black", width=max(2, w // 30))
    return img.convert(mode)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A real 1-bit PNG of width x height zeros: ~300 MB of scanlines compressed to a few hundred KB."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    block = row * 64
    parts = [packer.compress(block) for _ in range(height // 64)]
    parts.append(packer.compress(row * (height % 64)))
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def png_header_only(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG whose header claims width x height, with one byte of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00"))
            + chunk(b"IEND", b""))


def png_text_bomb() -> bytes:
    """A valid small PNG with a zTXt chunk that inflates to 64 MB of text."""
    png = encode(drawing((60, 80)), "PNG")
    packer = zlib.compressobj(9)
    text = b"".join(packer.compress(b"A" * (1 << 20)) for _ in range(64)) + packer.flush()
    ztxt = chunk(b"zTXt", b"Comment\x00\x00" + text)
    return png[:33] + ztxt + png[33:]  # after the signature (8) and IHDR (25)


def gif_many_frames(frames: int = 5000) -> bytes:
    """A 16x16 GIF with ``frames`` frames, each a different colour (written by hand: PIL would merge them)."""
    palette = bytes(v for i in range(256) for v in (i, 255 - i, (i * 7) % 256))
    out = [b"GIF89a", struct.pack("<HHBBB", 16, 16, 0xF7, 0, 0), palette,
           b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"]  # loop forever
    for i in range(frames):
        out.append(b"\x21\xf9\x04\x00\x01\x00\x00\x00")  # graphic control: 10 ms
        out.append(b"\x2c" + struct.pack("<HHHHB", 0, 0, 16, 16, 0))
        out.append(_lzw_frame(i % 256))
    out.append(b"\x3b")
    return b"".join(out)


@lru_cache(maxsize=256)
def _lzw_frame(index: int) -> bytes:
    """LZW-compressed image data (min code size + sub-blocks) of a 16x16 frame filled with ``index``."""
    data = encode(Image.new("P", (16, 16), index), "GIF")
    # Skip header (6), logical screen (7), global palette (768 for a full P image), optional GCE, descriptor (10).
    pos = data.index(b"\x2c", 13) + 10
    if data[pos - 1] & 0x80:  # a local colour table follows the descriptor
        pos += 3 << ((data[pos - 1] & 7) + 1)
    end = data.rindex(b"\x3b")
    return data[pos:end]


def jpeg_huge_exif() -> bytes:
    """A JPEG with a 60 KB EXIF block (a long description, an odd orientation) plus 150 more APP1 segments."""
    exif = Image.Exif()
    exif[0x010E] = "A" * 60_000  # ImageDescription
    exif[0x0112] = 6
    data = encode(drawing(), "JPEG", exif=exif.tobytes())
    extra = b"".join(b"\xff\xe1" + struct.pack(">H", 65_000) + b"Exif\x00\x00" + bytes(64_992) for _ in range(150))
    return data[:2] + extra + data[2:]


def jpeg_broken_exif() -> bytes:
    """A JPEG whose APP1 claims EXIF but holds a TIFF header pointing far outside itself."""
    body = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 0x7FFFFFF0) + b"\xff" * 32
    app1 = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    data = encode(drawing(), "JPEG")
    return data[:2] + app1 + data[2:]


def jpeg_bad_orientation() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 65_535
    return encode(drawing(), "JPEG", exif=exif.tobytes())


def jpeg_claims_size(width: int, height: int) -> bytes:
    """A real JPEG with its SOF0 dimensions rewritten."""
    data = bytearray(encode(drawing((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_claims_size(width: int, height: int) -> bytes:
    data = encode(Image.new("L", (8, 8), 255), "TIFF")
    # Rewrite ImageWidth (256) and ImageLength (257), stored as SHORT or LONG in the first IFD.
    buf = bytearray(data)
    (ifd,) = struct.unpack_from("<I", buf, 4)
    (n,) = struct.unpack_from("<H", buf, ifd)
    for i in range(n):
        at = ifd + 2 + 12 * i
        (tag,) = struct.unpack_from("<H", buf, at)
        if tag in (256, 257):
            value = width if tag == 256 else height
            struct.pack_into("<HHI", buf, at, tag, 4, 1)
            struct.pack_into("<I", buf, at + 8, value)
    return bytes(buf)


def bmp_claims_size(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (4, 4), "white"), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def gif_claims_screen(width: int, height: int) -> bytes:
    data = bytearray(encode(drawing((16, 16), "P"), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


@lru_cache(maxsize=1)
def corpus() -> tuple[Specimen, ...]:
    jpeg = encode(drawing(), "JPEG", quality=90)
    png = encode(drawing(), "PNG")
    gif = encode(drawing(mode="P"), "GIF")
    html = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
    svg = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="60" height="80">'
           b'<script>alert(1)</script><rect width="60" height="80"/></svg>')
    ico = encode(drawing((32, 32)), "ICO")
    specimens = [
        # Not images at all, whatever the name says.
        Specimen("zero-bytes", b"", "empty.jpg"),
        Specimen("one-byte", b"\xff", "x.jpg"),
        Specimen("html-named-jpg", html, "photo.jpg"),
        Specimen("svg", svg, "drawing.svg"),
        Specimen("svg-named-png", svg, "drawing.png"),
        Specimen("pdf", b"%PDF-1.7\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF", "doc.pdf"),
        Specimen("zip", b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18), "archive.jpg"),
        Specimen("elf", b"\x7fELF\x02\x01\x01" + bytes(57), "run.png"),
        Specimen("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 60 80\nshowpage\n", "x.eps"),
        Specimen("ico-not-accepted", ico, "favicon.jpg"),
        Specimen("random-bytes", bytes((i * 7919 + 13) % 256 for i in range(4096)), "noise.jpg"),
        # Polyglots and magic-number liars.
        Specimen("png-magic-then-html", b"\x89PNG\r\n\x1a\n" + html, "x.png"),
        Specimen("jpeg-magic-then-pdf", b"\xff\xd8\xff\xe0%PDF-1.4 " + html, "x.jpg"),
        Specimen("gifar-js", b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=alert(1);//" + html, "x.gif"),
        Specimen("html-then-jpeg", html + jpeg, "x.jpg"),
        Specimen("jpeg-then-html", jpeg + html, "polyglot.jpg", expect="accept"),
        Specimen("png-then-zip", png + b"PK\x03\x04" + bytes(26) + b"PK\x05\x06" + bytes(18), "x.png", expect="accept"),
        # Broken images.
        Specimen("truncated-jpeg", jpeg[: len(jpeg) // 3], "cut.jpg"),
        Specimen("truncated-png", png[: len(png) // 2], "cut.png"),
        Specimen("png-header-only", png[:33], "head.png"),
        Specimen("png-bad-idat", png[:41] + b"\x00" * 64 + png[105:], "bad.png"),
        Specimen("gif-header-only", gif[:13], "head.gif"),
        Specimen("png-zero-size", png_header_only(0, 0), "zero.png"),
        # Decompression bombs and size liars.
        Specimen("png-bomb-50000x50000", png_bomb(), "bomb.png"),
        Specimen("png-claims-60000x60000", png_header_only(60_000, 60_000), "huge.png"),
        Specimen("jpeg-claims-65000x65000", jpeg_claims_size(65_000, 65_000), "huge.jpg"),
        Specimen("tiff-claims-100000x100000", tiff_claims_size(100_000, 100_000), "huge.tif"),
        Specimen("bmp-claims-60000x60000", bmp_claims_size(60_000, 60_000), "huge.bmp"),
        Specimen("bmp-negative-size", bmp_claims_size(-5, -5), "neg.bmp"),
        Specimen("gif-screen-65535x65535", gif_claims_screen(65_535, 65_535), "screen.gif"),
        Specimen("oversize-11MB-jpeg", jpeg + bytes(11 * 1024 * 1024), "big.jpg"),  # a valid JPEG, padded
        Specimen("png-ztxt-bomb", png_text_bomb(), "text.png", expect="either"),
        # Valid pictures with something odd about them.
        Specimen("gif-5000-frames", gif_many_frames(), "anim.gif", expect="accept"),
        Specimen("jpeg-huge-exif", jpeg_huge_exif(), "exif.jpg", expect="accept"),
        Specimen("jpeg-broken-exif", jpeg_broken_exif(), "exif.jpg", expect="accept"),
        Specimen("jpeg-orientation-65535", jpeg_bad_orientation(), "o.jpg", expect="accept"),
        Specimen("png-named-exe", png, "setup.exe", expect="accept"),
        # Hostile file names on a valid picture (the name must never reach the disk).
        Specimen("name-traversal", jpeg, "../../../../tmp/owned.jpg", expect="accept"),
        Specimen("name-windows-traversal", jpeg, "..\\..\\..\\windows\\win.ini.jpg", expect="accept"),
        Specimen("name-absolute", jpeg, "/etc/passwd", expect="accept"),
        Specimen("name-non-utf8", jpeg, b"caf\xe9-\xff\xfe.jpg", expect="either"),
        Specimen("name-nul-and-newline", jpeg, b"a\x00b\r\nContent-Type: text/html.jpg", expect="accept"),
        Specimen("name-very-long", jpeg, "x" * 5000 + ".jpg", expect="either"),
    ]
    return tuple(specimens)


def multipart(fields: dict[str, str], files: dict[str, Specimen], boundary: str = "----reliability7") -> bytes:
    """A multipart/form-data body written by hand, so file names can be any bytes."""
    b = boundary.encode()
    out = []
    for key, value in fields.items():
        out += [b"--" + b, f'Content-Disposition: form-data; name="{key}"'.encode(), b"", value.encode()]
    for key, spec in files.items():
        name = spec.filename if isinstance(spec.filename, bytes) else spec.filename.encode()
        name = name.replace(b"\r\n", b" ").replace(b'"', b"%22")  # one header line, as a browser would send
        out += [b"--" + b, b'Content-Disposition: form-data; name="' + key.encode() + b'"; filename="' + name + b'"',
                b"Content-Type: image/jpeg", b"", spec.data]
    out += [b"--" + b + b"--", b""]
    return b"\r\n".join(out)


MULTIPART = "multipart/form-data; boundary=----reliability7"
