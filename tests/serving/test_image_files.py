"""Tests for onegan_tf/serving/image_files.py, the library side of `predict`: image files in
(any size, broken ones skipped), PNGs and CSV out, unique output names, the size limit and
downscaled decoding. (The command and its exit status: tests/test_predict.py.)"""

import csv
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from onegan_tf.serving import image_files


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height but holds no pixel data (a few dozen bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                         zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0,
                                                              0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_segment_and_cluster_with_names_that_share_a_stem(served, input_folder, tmp_path):
    out = tmp_path / "out"
    result = image_files.predict(served, [str(input_folder)], "segment", out, log=lambda m: None,
                             progress=False)
    assert len(result["skipped"]) == 1 and "broken.png" in result["skipped"][0]
    assert len(result["processed"]) == 2 and len(result["written"]) == 4
    # a.png and a.jpg: separate outputs, masks at each input's size
    assert Image.open(out / "a_png_mask.png").size == (60, 40)
    assert Image.open(out / "a_jpg_mask.png").size == (32, 32)
    assert Image.open(out / "a_png_overlay.png").size == (60, 40)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in result["written"])
    image_files.predict(served, [str(input_folder / "a.png"), str(input_folder / "a.jpg")],
                        "cluster", out, progress=False)
    rows = list(csv.DictReader(open(out / "clusters.csv")))
    assert [r["file"].split("/")[-1] for r in rows] == ["a.png", "a.jpg"]
    assert [r["name"] for r in rows] == ["a_png", "a_jpg"]
    assert 0 <= int(rows[0]["child"]) < 12 and len(rows[0]) == 6 + 12


def test_output_names_are_unique(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    files = [one / "a.png", one / "a.jpg", two / "a.png", one / "a_png", two / "A.PNG"]
    assert image_files.output_names(files) == ["a_png", "a_jpg", "a_png_2", "a_png_3", "A_PNG_4"]
    one.mkdir()
    (one / "x.png").write_bytes(b"")
    assert image_files.list_inputs([str(one), str(one / "x.png")]) == [one / "x.png"]  # once


def test_size_limit_reads_only_the_header(served, input_folder, tmp_path):
    # 64 MP declared, no pixel data
    (input_folder / "huge.png").write_bytes(png_header(8000, 8000))
    result = image_files.predict(served, [str(input_folder / "huge.png"),
                                          str(input_folder / "a.png")],
                                 "remove_object", tmp_path / "o", log=lambda m: None,
                                 progress=False)
    assert result["skipped"] == [f"{input_folder / 'huge.png'}: too large: 8000x8000 pixels "
                                 f"(64.0 MP) > --max_pixels={image_files.MAX_PIXELS}"]
    assert result["written"] == [tmp_path / "o" / "a_png_background.png"]
    with pytest.raises(ValueError, match=r"a.png: too large: 60x40 pixels \(0.0 MP\) > "
                                         r"--max_pixels=2000"):
        image_files.load_image(input_folder / "a.png", max_pixels=2000)


def test_large_images_are_decoded_downscaled(served, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    gradient = np.uint8(np.linspace(0, 255, 400))[None, :, None].repeat(300, 0).repeat(3, 2)
    Image.fromarray(gradient).save(folder / "big.jpg")  # 400 x 300: JPEG draft path
    Image.fromarray(gradient[:, :200]).save(folder / "big.png")  # 200 x 300: plain decode
    out = tmp_path / "out"
    result = image_files.predict(served, [str(folder)], "segment", out, progress=False,
                             direct_pixels=10_000)
    assert result["skipped"] == [] and len(result["processed"]) == 2
    for name, size in (("big_jpg", (400, 300)), ("big_png", (200, 300))):
        assert Image.open(out / f"{name}_mask.png").size == size  # the input's size
        overlay = Image.open(out / f"{name}_overlay.png")  # the decoded (reduced) size
        assert overlay.width * overlay.height <= 2_500  # direct_pixels / 4
        assert abs(overlay.width / overlay.height - size[0] / size[1]) < 0.05


def test_error_text_is_cut_at_a_word_boundary():
    message = ("{{function_node __wrapped__DecodeImage_device_/job:localhost/replica:0}} "
               + " ".join(f"word{i}" for i in range(100)) + "\nsecond line")
    text = image_files.short(message, limit=60)
    assert text.endswith(" ...") and len(text) <= 64 and "function_node" not in text
    words = text[:-4].split(" ")
    assert words == [f"word{i}" for i in range(len(words))]
