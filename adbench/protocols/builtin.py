"""The built-in evaluation protocols: adbench's own and those of the papers' official code.

Each paper protocol cites, per field, the official file and line it follows (the repositories'
default branches as read in December 2026; line numbers of that version).
"""

from __future__ import annotations

from adbench.protocols.base import AuproRule, ImageScore, PixelRule, Protocol, Smoothing

ADBENCH = Protocol(
    name="adbench",
    summary=(
        "adbench's unified protocol (the default, used for ranking): the whole image at the "
        "method's image size, masks nearest-resized, the method's own smoothing and score, "
        "exact AUPRO to FPR 0.3"
    ),
)

_DINOMALY_UTILS = "guojiajeremy/Dinomaly utils.py"
DINOMALY = Protocol(
    name="dinomaly",
    summary=(
        "the official Dinomaly evaluation (also the rules of INP-Former's paper numbers, "
        "per its README): 256 x 256 of the 392 crop of "
        "448, masks bilinear-resized then > 0, a 5 x 5 Gaussian of sigma 4, the mean of the top "
        "1 % as image score, AUPRO over 200 thresholds"
    ),
    crop_fraction=392 / 448,
    eval_size=256,
    mask_load="bilinear",
    mask_resize="nearest",
    mask_threshold=0.0,
    smoothing=Smoothing(sigma=4.0, kernel_size=5, padding="zeros"),
    image_score=ImageScore("top_fraction", 0.01),
    aupro=AuproRule(thresholds=200, fpr_limit=0.3, fpr_normalisation="max_kept"),
    view_pooling=None,
    evaluation_modes=("exact",),
    sources={
        "crop_fraction": "guojiajeremy/Dinomaly dinomaly_mvtec_uni.py:74-75 (image_size 448, "
        "crop_size 392); dataset.py:22-31 (Resize then CenterCrop, images and masks)",
        "eval_size": "dinomaly_mvtec_uni.py:206 (evaluation_batch(..., resize_mask=256)); "
        f"{_DINOMALY_UTILS}:370-372",
        "mask_load": "guojiajeremy/Dinomaly dataset.py:28-31 (gt_transforms: Resize((448, 448)), "
        "torchvision's bilinear default on the PIL mask, then ToTensor)",
        "mask_resize": f"{_DINOMALY_UTILS}:372 (F.interpolate(gt, size=resize_mask, "
        "mode='nearest'))",
        "mask_threshold": f"{_DINOMALY_UTILS}:376 (gt = gt.bool(): any non-zero value)",
        "map_resize": f"{_DINOMALY_UTILS}:371 (bilinear, align_corners=False)",
        "smoothing": f"{_DINOMALY_UTILS}:353, 374, 701-729 (get_gaussian_kernel(kernel_size=5, "
        "sigma=4): Conv2d, padding=kernel_size // 2, zeros)",
        "image_score": f"{_DINOMALY_UTILS}:386-389 (mean of the top int(n * max_ratio) pixels); "
        "dinomaly_mvtec_uni.py:206 (max_ratio=0.01)",
        "aupro": f"{_DINOMALY_UTILS}:651-697 (compute_pro(num_th=200): thresholds np.arange("
        "min, max, (max - min) / 200), pixel > th; FPR < 0.3 kept and divided by its maximum; "
        "sklearn auc)",
        "aggregation": "dinomaly_mvtec_uni.py:203-223 (metrics per category, then np.mean)",
        "view_pooling": "dinomaly_realiad_uni.py:191 (each Real-IAD view scored as an image by "
        "evaluation_batch)",
        "evaluation_modes": f"{_DINOMALY_UTILS}:397-406 (sklearn roc_auc_score and "
        "average_precision_score over every pixel)",
    },
)

_GLAD_TEST = "hyao1/GLAD main_multi.py"
GLAD = Protocol(
    name="glad",
    summary=(
        "the official GLAD multi-class test (main_multi.py): 256 x 256, no crop, masks "
        "bilinear-resized and anomalous only where they stay 255, a Gaussian of sigma 6 "
        "(kernel 49, reflect), the mean of the top 250 pixels, AUPRO over 200 thresholds"
    ),
    eval_size=256,
    mask_load="bilinear",
    mask_resize="bilinear",
    mask_threshold=254.5 / 255,
    smoothing=Smoothing(sigma=6.0, kernel_size=49, padding="reflect"),
    image_score=ImageScore("top_k", 250),
    aupro=AuproRule(thresholds=200, fpr_limit=0.3, fpr_normalisation="max_kept"),
    view_pooling=None,
    evaluation_modes=("exact",),
    sources={
        "eval_size": f"{_GLAD_TEST}:538-539 (args.resolution = 256 for MVTec AD; 564-565 MPDD, "
        "581-582 VisA); dataset/dataset_multiclass.py:280-289 (Resize to 256, no crop)",
        "mask_load": "hyao1/GLAD dataset/dataset_multiclass.py:116-124, 291-293 (convert('L'), "
        "Resize((256, 256)) bilinear, ToTensor)",
        "mask_resize": "dataset/dataset_multiclass.py:291-293 (the one bilinear resize)",
        "mask_threshold": f"{_GLAD_TEST}:342 (np.array(masks, dtype=np.int_): only a value of "
        "1.0, i.e. 255 after the resize, is anomalous)",
        "smoothing": f"{_GLAD_TEST}:300-301, 330 (kornia gaussian_blur2d, kernel 2 int(4 sigma "
        "+ 0.5) + 1 = 49, sigma 6, kornia's default border 'reflect')",
        "image_score": f"{_GLAD_TEST}:332 (torch.topk(anomaly_maps.flatten(1), 250).mean)",
        "aupro": "hyao1/GLAD utilize/utilize.py:39-70 (compute_pro, num_th=200, FPR < 0.3 "
        "divided by its maximum, sklearn auc)",
        "aggregation": f"{_GLAD_TEST}:361-363, 660-663 (per category, each value rounded to "
        "4 decimals, then np.mean)",
        "evaluation_modes": f"{_GLAD_TEST}:344-354 (sklearn over every pixel)",
    },
)

_ADER_METRIC = "zhangzjn/ADer util/metric.py"
_ADER_CONFIG = "zhangzjn/ADer configs/benchmark"
_ADEVAL = "adeval 1.1.0"
ADER = Protocol(
    name="ader",
    summary=(
        "the official ADer benchmark evaluation (the plain map max of RD, RD++, MambaAD and "
        "InvAD; ViTAD and UniAD average-pool the map 16 x 16 first): 256 x 256, no crop, masks "
        "> 0, bilinear-resized, then > 0.5, a scipy Gaussian of sigma 4 (kernel 33, reflect), "
        "P-AUROC, P-AP and AUPRO (to FPR 0.3) from ADEval's 50 strips, P-F1max at 21 thresholds; "
        "its mAD is the mean of the seven metrics"
    ),
    eval_size=256,
    mask_load="bilinear",
    mask_resize="bilinear",
    mask_threshold=0.5,
    map_resize="bilinear",
    smoothing=Smoothing(sigma=4.0, kernel_size=33, padding="symmetric"),
    image_score=ImageScore("max"),
    aupro=AuproRule(fpr_limit=0.3, fpr_normalisation="limit"),
    pixels=PixelRule(kind="strips", strips=50, f1_thresholds=21),
    view_pooling=None,
    evaluation_modes=("exact",),
    sources={
        "eval_size": f"{_ADER_CONFIG}/README.md:5 (all experiments at 256x256); "
        f"{_ADER_CONFIG}/vitad/vitad_256_100e.py:17, 47-58 (Resize((256, 256)) then "
        "CenterCrop((256, 256)): no crop)",
        "mask_load": "zhangzjn/ADer data/ad_dataset.py:130-131 (mask > 0 at its own "
        f"resolution, as a 0/255 'L' image); {_ADER_CONFIG}/vitad/vitad_256_100e.py:54-58 "
        "(target_transforms: Resize((256, 256), BILINEAR) of the PIL mask, ToTensor)",
        "mask_resize": f"{_ADER_CONFIG}/vitad/vitad_256_100e.py:55 (the one bilinear resize)",
        "mask_threshold": "zhangzjn/ADer trainer/vitad_trainer.py:90, rd_trainer.py:85, "
        "mambaad_trainer.py:148 (imgs_mask > 0.5 -> 1, else 0)",
        "map_resize": f"{_ADEVAL} iterative_cuda.py:32-33 (the map resized to the mask shape, "
        "bilinear, align_corners=False)",
        "smoothing": f"{_ADER_METRIC}:293-295 (scipy gaussian_filter(sigma) per map: mode "
        "'reflect', truncate 4, radius int(4 * 4 + 0.5) = 16); trainer/vitad_trainer.py:87-89, "
        "rd_trainer.py:84, mambaad_trainer.py:146 (gaussian_sigma=4)",
        "image_score": f"{_ADER_METRIC}:79-85 (pr_sp_max = pr_px.max(axis=(1, 2)) when "
        f"pooling_ks is None); {_ADER_CONFIG}/rd/rd_256_100e.py:72, "
        "mambaad/mambaad_256_100e.py:81 (pooling_ks=None; vitad_256_100e.py:77 has [16, 16])",
        "aupro": f"{_ADER_METRIC}:126-131 (mAUPRO_px = ADEval's p_aupro); {_ADEVAL} "
        "iterative.py:136-152 (LIMIT = 0.3: the points with fpr <= 0.3, the crossing segment "
        "interpolated, divided by 0.3)",
        "pixels": f"{_ADER_METRIC}:87-97 (EvalAccumulatorCuda(..., pr_px.min(), pr_px.max(), "
        "nstrips=50) per category), 120-125, 143-148 (P-AUROC, P-AP from ADEval), 77, 215-243 "
        "(mF1_max_px: min-max normalised maps, thresholds np.arange(0, 1 + 1e-3, 0.05), > t, "
        f"eps 1e-8, max); configs/__base__/cfg_common.py:24 (use_adeval = True); {_ADEVAL} "
        "cuda_mem_effic.py:26-34, 97-150 (histc strips plus under- and overflow bins, trapz)",
        "aggregation": "zhangzjn/ADer trainer/vitad_trainer.py:138-160 (metrics per category, "
        "x 100, then the arithmetic mean 'Avg')",
        "view_pooling": f"{_ADER_CONFIG}/vitad/vitad_256_100e.py:44-45 (use_sample=False, "
        f"views=[]: each Real-IAD view scored as an image); {_ADER_METRIC}:63-69 (the sample max "
        "is not in the reported metrics)",
        "evaluation_modes": f"{_ADER_METRIC}:93-94, 104, 133 (every pixel of the category into "
        "ADEval; sklearn over every image)",
    },
)

BUILTIN = (ADBENCH, DINOMALY, GLAD, ADER)
