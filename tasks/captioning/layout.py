"""Where caption files and images are: the folder layouts (Flickr8k, COCO, Karpathy), the image folder, the catalog."""

import collections
import os
import re
from typing import Dict, Optional

from tasks.captioning.config import DataConfig
from zoo import images
from zoo.data import files, sources
from zoo.errors import UserError


LOCAL_FOLDER = "flickr8k"
TFDS_NAME = "coco_captions"
TFDS_SPLITS = {"train": "train+restval", "validation": "val", "test": "test"}  # Karpathy's splits in tfds
TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "validation": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
IMAGE_FOLDERS = ("images", "Images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images", "flickr30k_images")
# Values of a split field (COCO `split`, Karpathy's, a table column) -> the zoo's splits; others count as train.
SPLIT_NAMES = {"train": "train", "restval": "train", "val": "validation", "valid": "validation",
               "validation": "validation", "dev": "validation", "test": "test"}


def token_file_beside(path: str) -> str:
    """The token file that a list of image names takes its captions from: in its folder, Flickr8k_text/ or above."""
    here = os.path.dirname(os.path.abspath(path))
    for folder in (here, os.path.join(here, "Flickr8k_text"), os.path.dirname(here)):
        if os.path.isfile(os.path.join(folder, TOKEN_FILE)):
            return os.path.join(folder, TOKEN_FILE)
        found = sorted(name for name in (os.listdir(folder) if os.path.isdir(folder) else [])
                       if ".token" in name.lower() and "lemma" not in name.lower()
                       and os.path.isfile(os.path.join(folder, name)))
        if len(found) > 1:
            raise UserError(f"{path}: a list of image names takes its captions from the token file beside it, "
                            f"and {folder} has several ({', '.join(found)})")
        if found:
            return os.path.join(folder, found[0])
    raise UserError(f"{path}: a list of image names needs the `image.jpg#k<TAB>caption` file beside it "
                    f"(e.g. {TOKEN_FILE}); none found")


def find_image_folder(path: str, entries: list, data: DataConfig, location: Optional[dict]):
    """(the folder holding most of the entries' images or None, the candidate folders tried); see data.py."""
    if data.image_dir != "auto":
        base = data.image_dir
        if not os.path.isdir(base) and os.path.isdir(os.path.join(os.path.dirname(path), base)):
            base = os.path.join(os.path.dirname(path), base)  # relative to the caption file
        if not os.path.isdir(base):
            raise UserError(f"data.image_dir={data.image_dir}: no such folder")
        bases = [base]
    elif location and location.get("images"):
        bases = [location["images"]]
    else:
        here = os.path.dirname(os.path.abspath(path))
        bases = [here, os.path.dirname(here)]
    split_words = [word for word in re.split(r"[^A-Za-z0-9]+", files.file_stem(path))
                   if re.fullmatch(r"(train|val|valid|dev|test|restval)\d*", word.lower())]  # captions_val2017
    nested = [os.path.join(folder, word) for folder in IMAGE_FOLDERS for word in split_words]  # images/val2017
    return images.find_folder(bases, [entry.names for entry in entries], (*split_words, *nested, *IMAGE_FOLDERS))


def find_layout(folder: str) -> Dict[str, dict]:
    """{split: location} for a folder: the Flickr8k layout, COCO as downloaded, one Karpathy dataset_*.json,
    else the file names that say the split (zoo.data.sources.find_split_files)."""
    for text in (folder, os.path.join(folder, "Flickr8k_text")):
        token = os.path.join(text, TOKEN_FILE)
        if os.path.isfile(token):
            image_folder = next((os.path.join(folder, name) for name in IMAGE_FOLDERS
                                 if os.path.isdir(os.path.join(folder, name))), folder)
            extra = {"images": os.path.abspath(image_folder)}
            lists = {split: os.path.join(text, name) for split, name in SPLIT_FILES.items()
                     if os.path.isfile(os.path.join(text, name))}
            if "train" not in lists:
                return {"train": sources.file_location(token, **extra)}
            return {split: sources.file_location(list_path, captions=os.path.abspath(token), **extra)
                    for split, list_path in lists.items()}
    for where in (os.path.join(folder, "annotations"), folder):
        releases = collections.defaultdict(dict)  # "2017" -> {split: (file name, image folder name)}
        for name in sorted(os.listdir(where)) if os.path.isdir(where) else []:
            match = re.fullmatch(r"captions_(train|val|test)(\d*)\.json", name)
            if match:
                releases[match[2]][SPLIT_NAMES[match[1]]] = (name, match[1] + match[2])
        if len(releases) > 1:
            raise UserError(f"{where}: caption files of several COCO releases ({', '.join(sorted(releases))}); "
                            "name them with --train-file F --validation-file F")
        if releases and "train" in next(iter(releases.values())):
            locations = {}
            for split, (name, image_folder) in next(iter(releases.values())).items():
                image_folder = os.path.join(folder, image_folder)
                extra = {"images": os.path.abspath(image_folder)} if os.path.isdir(image_folder) else {}
                locations[split] = sources.file_location(os.path.join(where, name), **extra)
            return locations
    karpathy = sorted(name for name in os.listdir(folder) if re.fullmatch(r"dataset_[\w-]+\.json", name, re.I))
    if len(karpathy) > 1:
        raise UserError(f"{folder}: several Karpathy files ({', '.join(karpathy)}); name one with --train-file")
    if karpathy:
        return {"train": sources.file_location(os.path.join(folder, karpathy[0]))}
    return sources.find_split_files(folder, CATALOG)


CATALOG = sources.Catalog(
    folder=LOCAL_FOLDER,
    describe="a COCO or Karpathy caption JSON, `image.jpg#k<TAB>caption` lines, or an image/caption table, "
             "images beside it or in data.image_dir",
    extensions=(".json", ".csv", ".tsv", ".txt", ".token"),
    tfds=sources.Tfds(TFDS_NAME, TFDS_SPLITS),
    find=find_layout,
)


