"""Reads barlow's TensorBoard event files with the tensorboard package's own reader, for
tests/test_tb.c, and prints JSON on stdout.

  tb_read.py DIR           EventAccumulator over DIR: file_version, Tags(), every scalar
                           (step, value, wall_time) and every image (step, width, height and
                           the PNG decoded by PIL to RGB bytes, as a list).
  tb_read.py --verify FILE walks FILE's records with tensorboard's record reader, which checks
                           both masked CRC-32Cs of every record: {"records": n, "error": msg}.

Exits 2 (with a message on stderr) when the tensorboard package is missing, so the C test
fails instead of skipping.
"""
import io
import json
import sys

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.tensorflow_stub import errors as tb_errors
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as tb_pywrap
except Exception as e:  # noqa: BLE001 - any import failure means the reference is unusable
    sys.stderr.write("tb_read.py: the tensorboard package is not importable (%s); "
                     "run tools/install-test-deps.sh\n" % e)
    sys.exit(2)


def read_dir(d):
    from PIL import Image

    ea = EventAccumulator(d, size_guidance={"scalars": 0, "images": 0, "tensors": 0,
                                            "histograms": 0, "audio": 0,
                                            "compressedHistograms": 0})
    ea.Reload()
    tags = ea.Tags()
    out = {"file_version": ea.file_version,
           "tags": {k: sorted(v) for k, v in tags.items() if isinstance(v, list)},
           "scalars": {}, "images": {}}
    for t in tags["scalars"]:
        out["scalars"][t] = [{"step": e.step, "value": e.value, "wall_time": e.wall_time}
                             for e in ea.Scalars(t)]
    for t in tags["images"]:
        imgs = []
        for e in ea.Images(t):
            im = Image.open(io.BytesIO(e.encoded_image_string))
            imgs.append({"step": e.step, "width": e.width, "height": e.height,
                         "png_size": [im.size[0], im.size[1]], "mode": im.mode,
                         "rgb": list(im.convert("RGB").tobytes())})
        out["images"][t] = imgs
    return out


def verify(path):
    r = tb_pywrap.PyRecordReader_New(path)
    n = 0
    while True:
        try:
            r.GetNext()
        except tb_errors.OutOfRangeError:
            return {"records": n, "error": None}
        except tb_errors.DataLossError as e:
            return {"records": n, "error": str(e)}
        n += 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--verify":
        res = verify(sys.argv[2])
    elif len(sys.argv) == 2:
        res = read_dir(sys.argv[1])
    else:
        sys.stderr.write("usage: tb_read.py DIR | tb_read.py --verify FILE\n")
        sys.exit(2)
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
