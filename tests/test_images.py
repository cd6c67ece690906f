"""zoo/images.py: the readable part of TensorFlow's image decoding errors."""

from zoo.images import decode_error

MESSAGE = "jpeg::Uncompress failed. Invalid JPEG data or size."


def test_decode_error_reads_eager_and_compiled_call_errors_alike():
    eager = Exception("{{function_node __wrapped__DecodeJpeg_device_/job:localhost/task:0}} " + MESSAGE
                      + " [Op:DecodeJpeg] name: ")
    compiled = Exception("Graph execution error:\n\nDetected at node decode_jpeg defined at (most recent call last):\n"
                         '  File "serving.py", line 12, in call\n    pixels = decode(encoded)\n'
                         + MESSAGE + "\n\t [[{{node decode_jpeg}}]] [Op:__inference_call_1234]")
    assert decode_error(eager) == MESSAGE
    assert decode_error(compiled) == MESSAGE  # not the "]]" left of the node marker
    assert decode_error(ValueError("")) == "ValueError"
