"""Small synthetic datasets in real published layouts: the three seed datasets, MSD and nnU-Net.

They are the embedded default of ``raysegment demo`` and the fixtures of the importer tests. The
lesions are learnable (a bright blob whose mask is exactly the blob), so a few epochs of a small
U-Net reach a high Dice, which is how the demo shows that training works.

* ``lgg``: Kaggle "lgg-mri-segmentation" ``kaggle_3m/TCGA_XX_NNNN_YYYYMMDD/<patient>_<k>[_mask].tif``
  (RGB uint8 slices: pre-contrast, FLAIR, post-contrast; masks 0/255), plus ``data.csv`` and a README.
* ``brats``: BraTS 2020 ``MICCAI_BraTS2020_TrainingData/BraTS20_Training_NNN/..._{flair,t1,t1ce,t2,seg}.nii.gz``
  with labels {0,1,2,4}, the CSV side files, validation cases without seg, and (``quirks``) one
  case whose seg file has another name, as case 355 of the real set does.
* ``lv``: cardiac MR DICOM slices with PNG left-ventricle masks, ``training/*.dcm`` + ``*.png`` and
  ``test/*.dcm`` + ``test/GT/*.png``; the DICOM headers carry (fake) patient names, which the
  importer must not copy.
* ``msd``: Medical Segmentation Decathlon ``dataset.json`` + ``imagesTr/`` (4D: two modalities on the
  4th axis) + ``labelsTr/`` (two exclusive classes, as the hippocampus's anterior/posterior) + ``imagesTs/``.
* ``nnunet``: the same cases in the nnU-Net v2 raw layout (``<case>_0000.nii.gz`` per channel).
"""

from __future__ import annotations

import datetime
import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from raysegment import storage
from raysegment.registry import Registry

GENERATORS: Registry[Callable[..., SampleInfo]] = Registry("sample dataset")


@dataclass
class SampleInfo:
    """What a generator wrote."""

    kind: str
    root: str
    patients: int
    files: int


def _blob(shape: tuple[int, ...], center, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))
    return dist <= 1.0


def _texture(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth random background so the model must find the lesion, not just any bright pixel."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(rng.normal(size=shape), sigma=max(shape) / 24)


def _write_array(uri: str, writer: Callable[[str], None]) -> None:
    with storage.atomic_write(uri) as tmp:
        writer(tmp)


def _lgg_number(p: int) -> str:
    """The 4 characters of patient ``p``'s TCGA id: 7000-9999, then A000-ZZZZ (base 36), so archives
    of more than 3,000 patients keep the layout's ``TCGA_XX_NNNN`` form."""
    if p < 3000:
        return f"{7000 + p}"
    q, digits = p - 3000 + 10 * 36**3, ""
    for _ in range(4):
        q, r = divmod(q, 36)
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r] + digits
    return digits


@GENERATORS.register("lgg")
def make_lgg(out: str, patients: int = 8, slices: int = 10, size: int = 128, seed: int = 0, **_) -> SampleInfo:
    """Kaggle LGG layout: one folder per patient of RGB TIFF slices and 0/255 TIFF masks."""
    import tifffile

    rng = np.random.default_rng(seed)
    root = storage.join(out, "kaggle_3m")
    files = 0
    csv_rows = ["Patient,RNASeqCluster,MethylationCluster,death01"]
    for p in range(patients):
        institution = ["CS", "DU", "EZ", "FG", "HT"][p % 5]
        patient = f"TCGA_{institution}_{_lgg_number(p)}"
        folder = f"{patient}_{(datetime.date(1995, 1, 1) + datetime.timedelta(days=97 * (p % 3000))):%Y%m%d}"
        csv_rows.append(f"{patient},{p % 4 + 1},{p % 5 + 1},{p % 2}")
        center = rng.uniform(0.35, 0.65, size=2) * size
        radii = rng.uniform(0.08, 0.16, size=2) * size
        lesion_slices = range(slices // 4, slices - slices // 4) if p % 4 != 3 else range(0)  # some patients have none
        for k in range(1, slices + 1):
            brain = _blob((size, size), (size / 2, size / 2), (size * 0.42, size * 0.36))
            tex = _texture(rng, (3, size, size))
            image = np.where(brain, 90 + 25 * tex, 5 + 3 * np.abs(tex))
            mask = np.zeros((size, size), np.uint8)
            if (k - 1) in lesion_slices:
                scale = 1.0 - abs((k - 1) - slices / 2) / slices  # lesion shrinks away from the middle
                lesion = _blob((size, size), center + rng.normal(0, 1, 2), radii * scale) & brain
                image[1][lesion] += 110  # FLAIR hyperintensity
                image[2][lesion] += 40
                mask[lesion] = 255
            rgb = np.clip(image, 0, 255).astype(np.uint8).transpose(1, 2, 0)
            base = storage.join(root, folder, f"{folder}_{k}")
            _write_array(f"{base}.tif", lambda f, a=rgb: tifffile.imwrite(f, a, photometric="rgb"))
            _write_array(f"{base}_mask.tif", lambda f, a=mask: tifffile.imwrite(f, a))
            files += 2
    storage.write_bytes(storage.join(root, "data.csv"), ("\n".join(csv_rows) + "\n").encode())
    storage.write_bytes(storage.join(root, "README.md"), b"Synthetic LGG sample in the kaggle_3m layout (raysegment).\n")
    return SampleInfo("lgg", root, patients, files)


BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")


@GENERATORS.register("brats")
def make_brats(out: str, patients: int = 6, size: int = 48, depth: int = 24, seed: int = 0,
               validation: int = 1, quirks: bool = True, **_) -> SampleInfo:
    """BraTS 2020 layout: four modalities and a {0,1,2,4} seg per case, NIfTI-1 .nii.gz."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    # BraTS volumes are stored LPS-like: the first two axes flipped relative to RAS.
    affine = np.array([[-1.0, 0, 0, size - 1], [0, -1.0, 0, size - 1], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    shape = (size, size, depth)
    files = 0
    train_root = storage.join(out, "MICCAI_BraTS2020_TrainingData")
    val_root = storage.join(out, "MICCAI_BraTS2020_ValidationData")
    mapping = ["BraTS_2020_subject_ID,Grade"]
    cases = [(f"BraTS20_Training_{i + 1:03d}", train_root, True) for i in range(patients)]
    cases += [(f"BraTS20_Validation_{i + 1:03d}", val_root, False) for i in range(validation)]
    for index, (case, root, labeled) in enumerate(cases):
        mapping.append(f"{case},{'HGG' if index % 3 else 'LGG'}")
        brain = _blob(shape, np.array(shape) / 2, np.array(shape) * [0.42, 0.36, 0.45])
        center = np.array(shape) * rng.uniform(0.4, 0.6, size=3)
        radii = np.array(shape) * rng.uniform(0.12, 0.2, size=3)
        edema = _blob(shape, center, radii) & brain
        core = _blob(shape, center, radii * 0.6) & brain
        enhancing = core & ~_blob(shape, center, radii * 0.35)
        seg = np.zeros(shape, np.uint8)
        seg[edema], seg[core], seg[enhancing] = 2, 1, 4
        bright = {"flair": (edema, 300), "t1": (core, -150), "t1ce": (enhancing, 400), "t2": (edema, 250)}
        for modality in BRATS_MODALITIES:
            region, gain = bright[modality]
            volume = np.where(brain, 500 + 60 * _texture(rng, shape), 0) + region * gain
            img = nib.Nifti1Image(np.clip(volume, 0, None).astype(np.int16), affine)
            _write_array(storage.join(root, case, f"{case}_{modality}.nii.gz"), lambda f, i=img: nib.save(i, f))
            files += 1
        if labeled:
            seg_name = f"{case}_seg.nii.gz"
            if quirks and index == patients - 1:
                seg_name = "W39_1998.09.19_Segm.nii"  # the real set's case 355 looks like this
            seg_img = nib.Nifti1Image(seg, affine)
            _write_array(storage.join(root, case, seg_name), lambda f, i=seg_img: nib.save(i, f))
            files += 1
    storage.write_bytes(storage.join(train_root, "name_mapping.csv"), ("\n".join(mapping) + "\n").encode())
    storage.write_bytes(storage.join(train_root, "survival_info.csv"), b"Brats20ID,Age,Survival_days,Extent_of_Resection\n")
    return SampleInfo("brats", out, patients + validation, files)


def _dicom_bytes(pixels: np.ndarray, patient: str, slice_no: int, spacing: float, rng_uid: Callable[[], str],
                 frame_of_reference: str) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = rng_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = f"Synthetic^{patient}"  # identifying fields the importer must not copy
    ds.PatientID = patient
    ds.PatientBirthDate = "19600101"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = rng_uid(), rng_uid()
    ds.FrameOfReferenceUID = frame_of_reference  # one per patient, as a scanner writes it; DICOM SEG needs it
    ds.InstanceNumber = slice_no
    ds.ImagePositionPatient = [-spacing * pixels.shape[1] / 2, -spacing * pixels.shape[0] / 2, 8.0 * slice_no]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = 8.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@GENERATORS.register("lv")
def make_lv(out: str, patients: int = 6, slices: int = 6, size: int = 96, seed: int = 0, test_patients: int = 2, **_) -> SampleInfo:
    """Left-ventricle layout: DICOM MR slices with same-stem PNG masks; ``test/GT/`` for the test set."""
    from PIL import Image
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    uid = lambda: generate_uid(entropy_srcs=[str(rng.random())])  # noqa: E731 - deterministic UIDs per seed
    files = 0
    for p in range(patients + test_patients):
        patient = f"SCD{p + 1:05d}"
        test = p >= patients
        image_dir = storage.join(out, "test" if test else "training")
        mask_dir = storage.join(out, "test", "GT") if test else image_dir
        # Derived, not drawn from rng: the sample's pixels stay what they were before it was added.
        frame_of_reference = generate_uid(entropy_srcs=[patient, str(seed), "FrameOfReferenceUID"])
        center = size / 2 + rng.normal(0, size / 20, 2)
        radius = size * rng.uniform(0.1, 0.16)
        for k in range(1, slices + 1):
            r = radius * (1.0 - 0.5 * k / slices)  # the ventricle narrows towards the apex
            blood = _blob((size, size), center, (r, r * 1.1))
            myocardium = _blob((size, size), center, (r * 1.5, r * 1.6)) & ~blood
            body = _blob((size, size), (size / 2, size / 2), (size * 0.45, size * 0.4))
            image = np.where(body, 300 + 60 * _texture(rng, (size, size)), 20) + blood * 700 + myocardium * 100
            stem = f"{patient}_IM-0001-{k:04d}"
            data = _dicom_bytes(np.clip(image, 0, 4095), patient, k, 1.4, uid, frame_of_reference)
            storage.write_bytes(storage.join(image_dir, f"{stem}.dcm"), data)
            png = io.BytesIO()
            Image.fromarray(blood.astype(np.uint8) * 255).save(png, format="PNG")
            storage.write_bytes(storage.join(mask_dir, f"{stem}.png"), png.getvalue())
            files += 2
    return SampleInfo("lv", out, patients + test_patients, files)


SAMPLE_CHANNELS = ("T1", "T2")
SAMPLE_LABELS = ("anterior", "posterior")


def _two_class_cases(patients: int, test: int, size: int, depth: int, seed: int):
    """``(case, labeled, image (i, j, k, 2) int16, labels (i, j, k) uint8)``: a blob cut in two exclusive classes.

    Class 1 (the front half) is bright in T1 and class 2 (the back half) in T2, so telling them
    apart needs both channels.
    """
    rng = np.random.default_rng(seed)
    shape = (size, size, depth)
    for i in range(patients + test):
        center = np.array(shape) * rng.uniform(0.4, 0.6, size=3)
        blob = _blob(shape, center, np.array(shape) * rng.uniform(0.18, 0.28, size=3))
        front = np.arange(size)[None, :, None] < center[1]
        labels = (blob & front) * 1 + (blob & ~front) * 2
        t1 = 300 + 40 * _texture(rng, shape) + 250 * (labels == 1) + 60 * (labels == 2)
        t2 = 300 + 40 * _texture(rng, shape) + 60 * (labels == 1) + 250 * (labels == 2)
        image = np.stack([t1, t2], axis=-1).astype(np.int16)
        yield f"sample_{i + 1:03d}", i < patients, image, labels.astype(np.uint8)


def _save_nifti(uri: str, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(array, affine)
    _write_array(uri, lambda f: nib.save(image, f))


_SAMPLE_AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # anisotropic, as most MR series


@GENERATORS.register("msd")
def make_msd(out: str, patients: int = 6, size: int = 24, depth: int = 12, test: int = 2, seed: int = 0, **_) -> SampleInfo:
    """MSD layout: ``dataset.json``, 4D two-modality ``imagesTr/``, ``labelsTr/`` {0, 1, 2}, unlabeled ``imagesTs/``."""
    training, tests = [], []
    for case, labeled, image, labels in _two_class_cases(patients, test, size, depth, seed):
        image_path = f"./{'imagesTr' if labeled else 'imagesTs'}/{case}.nii.gz"
        _save_nifti(storage.join(out, image_path[2:]), image, _SAMPLE_AFFINE)
        if labeled:
            _save_nifti(storage.join(out, "labelsTr", f"{case}.nii.gz"), labels, _SAMPLE_AFFINE)
            training.append({"image": image_path, "label": f"./labelsTr/{case}.nii.gz"})
        else:
            tests.append(image_path)
    described = {
        "name": "Sample", "description": "Synthetic two-class sample in the MSD layout (raysegment)", "tensorImageSize": "4D",
        "modality": {str(i): c for i, c in enumerate(SAMPLE_CHANNELS)},
        "labels": {"0": "background", **{str(i + 1): name for i, name in enumerate(SAMPLE_LABELS)}},
        "numTraining": patients, "numTest": test, "training": training, "test": tests,
    }
    storage.write_bytes(storage.join(out, "dataset.json"), json.dumps(described, indent=1).encode())
    return SampleInfo("msd", storage.normalize(out), patients + test, 2 * patients + test + 1)


@GENERATORS.register("nnunet")
def make_nnunet(out: str, patients: int = 6, size: int = 24, depth: int = 12, test: int = 2, seed: int = 0, **_) -> SampleInfo:
    """nnU-Net v2 raw layout: ``imagesTr/<case>_000{0,1}.nii.gz``, ``labelsTr/<case>.nii.gz``, ``imagesTs/``."""
    for case, labeled, image, labels in _two_class_cases(patients, test, size, depth, seed):
        for k in range(image.shape[-1]):
            _save_nifti(storage.join(out, "imagesTr" if labeled else "imagesTs", f"{case}_{k:04d}.nii.gz"), image[..., k], _SAMPLE_AFFINE)
        if labeled:
            _save_nifti(storage.join(out, "labelsTr", f"{case}.nii.gz"), labels, _SAMPLE_AFFINE)
    described = {
        "channel_names": {str(i): c for i, c in enumerate(SAMPLE_CHANNELS)},
        "labels": {"background": 0, **{name: i + 1 for i, name in enumerate(SAMPLE_LABELS)}},
        "numTraining": patients, "file_ending": ".nii.gz", "name": "Sample",
    }
    storage.write_bytes(storage.join(out, "dataset.json"), json.dumps(described, indent=1).encode())
    return SampleInfo("nnunet", storage.normalize(out), patients + test, 3 * patients + 2 * test + 1)


def make_sample_data(out: str, kind: str = "lgg", **options) -> SampleInfo:
    """Write the sample dataset ``kind`` (a name in :data:`GENERATORS`) under ``out``."""
    return GENERATORS.get(kind)(out, **options)
