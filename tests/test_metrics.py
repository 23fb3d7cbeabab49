"""Sample-quality measures: the shipped classifier, the Frechet distance and KID against
references computed another way and against properties from their definitions, and measured
separations between real, degraded and copied digits.

The separation thresholds come from benchmarks/train_classifier.py's classifier at N = 500
(measured: floor ~32, blur(3, 1) ~19x floor, blur(5, 2) ~67x, Gaussian noise ~190x), with
a margin of about 3x.
"""

import math

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from ddpm_helpers.data import DigitsDataset
from ddpm_helpers.metrics import (WEIGHTS_PATH, DigitClassifier, accuracy, features, format_report,
                                  frechet_distance, kid, load_classifier, quality_report, save_classifier)

N = 500


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def test_set():
    return DigitsDataset(split="test")  # 2000 held-out digits


@pytest.fixture(scope="module")
def train_images():
    return DigitsDataset(n=5000, split="train").images


@pytest.fixture(scope="module")
def real_features(classifier, test_set):
    return features(test_set.images[:N], classifier), features(test_set.images[N:2 * N], classifier)


def test_shipped_classifier_accuracy(classifier, test_set):
    assert accuracy(classifier, test_set.images, test_set.labels) >= 0.99


def test_shipped_weights_are_small_fp32_safetensors():
    from safetensors.torch import load_file

    assert WEIGHTS_PATH.stat().st_size < 1_000_000
    assert all(t.dtype == torch.float32 for t in load_file(str(WEIGHTS_PATH)).values())


def test_save_load_roundtrip_and_missing_file(tmp_path):
    model = DigitClassifier()
    save_classifier(model, tmp_path / "c.safetensors")
    loaded = load_classifier(tmp_path / "c.safetensors")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="benchmarks/train_classifier.py"):
        load_classifier(tmp_path / "missing.safetensors")


def reference_frechet(a, b):
    """The same distance computed differently: Tr((S_a S_b)^{1/2}) as the sum of the square roots
    of the eigenvalues of the non-symmetric product S_a S_b (real and >= 0 for PSD S_a, S_b)."""
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))
    eigenvalues = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)
    return ((a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace()
            - 2 * eigenvalues.sqrt().sum()).item()


def random_gaussian(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g)
    return torch.randn(n, d, generator=g) @ mixing + torch.randn(d, generator=g)


def one_gaussian(n, d, seed):
    """n draws from one fixed correlated Gaussian in d dimensions (the same for every seed)."""
    g = torch.Generator().manual_seed(d)
    mixing, mean = torch.randn(d, d, generator=g), torch.randn(d, generator=g)
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1000 + seed)) @ mixing + mean


@pytest.mark.parametrize("d", [1, 3, 8])
def test_frechet_matches_brute_force_reference(d):
    a, b = random_gaussian(200, d, 0), random_gaussian(300, d, 1)
    expected = reference_frechet(a, b)
    assert expected > 0.1
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-10)


def test_frechet_closed_forms():
    a, b = random_gaussian(400, 1, 2).double(), random_gaussian(400, 1, 3).double()
    # 1-D: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2
    closed = (a.mean() - b.mean()) ** 2 + (a.std() - b.std()) ** 2
    assert frechet_distance(a, b) == pytest.approx(closed.item(), rel=1e-8)
    # a shifted copy has the same covariance: the distance is exactly ||shift||^2
    x = random_gaussian(300, 6, 4)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    shifts = [0.1, 0.5, 1.0, 2.0]
    distances = [frechet_distance(x, x + s) for s in shifts]
    assert distances == pytest.approx([6 * s**2 for s in shifts], rel=1e-6)


def test_frechet_separates_real_from_degraded_images(classifier, test_set, real_features):
    feats_a, feats_b = real_features
    floor = frechet_distance(feats_a, feats_b)
    other = test_set.images[N:2 * N]
    noise = torch.randn(other.shape, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    blur_light = frechet_distance(feats_a, features(gaussian_blur(other, 3, 1.0), classifier))
    blur_heavy = frechet_distance(feats_a, features(gaussian_blur(other, 5, 2.0), classifier))
    noise_d = frechet_distance(feats_a, features(noise, classifier))
    assert 5 < floor < 100
    assert blur_light >= 5 * floor and blur_heavy >= 20 * floor and noise_d >= 50 * floor
    assert floor < blur_light < blur_heavy < noise_d  # more damage, larger distance


def test_report_on_real_digits(classifier, test_set, train_images):
    report = quality_report(test_set.images[1000:1000 + N], real=test_set.images[:2 * N], classifier=classifier,
                            train_images=train_images)
    assert report.num_samples == N
    assert report.frechet < 3 * report.frechet_floor
    assert report.confident_fraction >= 0.95 and report.real_confident_fraction >= 0.95
    assert len(report.class_fractions) == 10 and report.classes_balanced
    assert sum(report.class_fractions) == pytest.approx(1.0)
    assert 0.8 < report.memorisation_ratio < 1.25 and not report.memorised
    assert abs(report.kid) < 5e4 and abs(report.kid_reference) < 5e4  # measured ~1e4 at N = 500
    table = format_report(report)
    assert f"{report.frechet:.2f}" in table and f"{report.frechet_floor:.2f}" in table
    assert f"{report.kid / 1e3:.1f}" in table and f"{report.kid_reference / 1e3:.1f}" in table


def test_report_on_noise(classifier, test_set, train_images):
    noise = torch.randn(N, 1, 32, 32, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    report = quality_report(noise, real=test_set.images[:2 * N], classifier=classifier, train_images=train_images)
    assert report.confident_fraction <= 0.3  # measured ~0.18: classifiers are overconfident off-distribution
    assert report.frechet >= 50 * report.frechet_floor
    assert report.kid >= 100 * max(abs(report.kid_reference), 1e4)
    assert not report.memorised


def test_memorisation_flags_copies_of_training_images(classifier, test_set, train_images):
    g = torch.Generator().manual_seed(2)
    copies = (train_images[:N] + 0.05 * torch.randn(N, 1, 32, 32, generator=g)).clamp(-1, 1)
    report = quality_report(copies, real=test_set.images[:2 * N], classifier=classifier, train_images=train_images)
    assert report.memorised and report.memorisation_ratio < 0.25  # measured ~0.13
    assert report.sample_nn_median < 0.25 * report.heldout_nn_median
    assert "MEMORISED" in format_report(report)


# --- KID: unbiased MMD^2 with the cubic kernel (Binkowski et al. 2018) --------------------------

def reference_kid(a, b):
    """The unbiased MMD^2 written as its definition, one pair at a time: O(n^2) Python loops."""
    a, b = a.double().tolist(), b.double().tolist()
    d, m = len(a[0]), len(a)

    def k(x, y):
        return (sum(p * q for p, q in zip(x, y)) / d + 1) ** 3

    within_a = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_b = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x, y) for x in a for y in b) / (m * m)
    return within_a + within_b - 2 * cross


@pytest.mark.parametrize("d", [1, 3, 8])
def test_kid_matches_the_definition_computed_pair_by_pair(d):
    a, b = random_gaussian(25, d, 10), random_gaussian(25, d, 11) + 0.5
    assert kid(a, b) == pytest.approx(reference_kid(a, b), rel=1e-9)
    assert kid(a, b) == pytest.approx(kid(b, a), rel=1e-12)


def test_kid_over_subsets_averages_to_the_full_set_estimate():
    """Each pair is equally likely in a random subset, so the mean over subsets (the reference
    implementation's estimate) has the full-set estimate as its expectation."""
    a, b = random_gaussian(40, 3, 12), random_gaussian(60, 3, 13) + 0.7
    m = 40  # both sets cut to the smaller size, as the reference does
    g = torch.Generator().manual_seed(0)
    by_hand = sum(reference_kid(a[torch.randperm(40, generator=g)[:m]], b[torch.randperm(60, generator=g)[:m]])
                  for _ in range(5)) / 5
    assert kid(a, b, num_subsets=5, generator=torch.Generator().manual_seed(0)) == pytest.approx(by_hand, rel=1e-9)
    full = reference_kid(a, b[:40])
    subsets = kid(a, b[:40], num_subsets=4000, subset_size=10)
    assert subsets == pytest.approx(full, rel=0.05)
    assert kid(a, b) == kid(a, b)  # the default generator is seeded: same features, same value


def test_kid_is_unbiased_zero_on_average_and_can_be_negative_for_one_distribution():
    values = torch.tensor([kid(one_gaussian(20, 4, 2 * i), one_gaussian(20, 4, 2 * i + 1)) for i in range(300)],
                          dtype=torch.float64)
    assert (values < 0).any() and (values > 0).any()
    assert abs(values.mean()) < 3 * values.std() / len(values) ** 0.5  # 0 within three standard errors


def test_kid_grows_with_a_mean_shift():
    x, y = one_gaussian(300, 6, 0), one_gaussian(300, 6, 1)
    values = [kid(x, y + s) for s in (0.0, 0.5, 1.0, 2.0, 4.0)]  # the features' std is ~2.5
    assert abs(values[0]) < values[1] / 3
    assert all(a < b for a, b in zip(values, values[1:]))


def test_kid_separates_real_from_degraded_images(classifier, test_set, real_features):
    feats_a, feats_b = real_features
    other = test_set.images[N:2 * N]
    blur_light = kid(feats_a, features(gaussian_blur(other, 3, 1.0), classifier))
    blur_heavy = kid(feats_a, features(gaussian_blur(other, 5, 2.0), classifier))
    real = kid(feats_a, feats_b)
    assert abs(real) < blur_light / 5 < blur_heavy / 5  # measured: |real| ~ 1e4, light blur ~ 5e5


def test_frechet_is_refused_at_n_up_to_the_feature_dimension():
    a, b = random_gaussian(8, 8, 30), random_gaussian(9, 8, 31)
    with pytest.raises(ValueError, match=r"N > D = 8.*got N = 8.*kid\(\)"):
        frechet_distance(a, b)
    assert frechet_distance(random_gaussian(9, 8, 32), b) > 0
    # its bias falls like 1/N: the floor of two real sets shrinks as N grows
    floors = [frechet_distance(one_gaussian(n, 8, n), one_gaussian(n, 8, n + 1)) for n in (20, 80, 320, 1280)]
    assert floors[0] > floors[1] > floors[2] > floors[3] > 0


@pytest.mark.parametrize("n", [8, 64])
def test_report_at_small_n_gives_kid_and_no_frechet(classifier, test_set, train_images, n):
    report = quality_report(test_set.images[1000:1000 + n], real=test_set.images[:2 * n], classifier=classifier,
                            train_images=train_images)
    assert math.isnan(report.frechet) and math.isnan(report.frechet_floor)
    assert math.isfinite(report.kid) and math.isfinite(report.kid_reference)
    table = format_report(report)
    assert "needs N > 64; read KID" in table and f"{report.kid / 1e3:.1f}" in table
