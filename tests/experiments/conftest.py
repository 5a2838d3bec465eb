"""flan_mini tests build the collection's TFDS datasets once, under the temp dir, never in ~."""
import os
import tempfile

os.environ.setdefault("FLAN_MINI_DATA_DIR",
                      os.path.join(tempfile.gettempdir(), "t5tune_flan_mini_tfds"))
