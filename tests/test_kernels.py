"""The bit-packed kernels (suite/kernels) give the exact integer products of the emulated arithmetic,
on every build (portable on any CPU; AVX2 and AVX-512 VPOPCNTDQ where the CPU has them)."""

import shutil
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import suite.kernels as K
from suite.kernels import build, dispatch
from suite.kernels.conv import conv2d, pack_weights
from suite.kernels.matmul import linear

ODD = [1, 63, 64, 65, 1000]


def _compiler() -> bool:
    return bool(shutil.which("c++") or shutil.which("g++")) and (Path(sysconfig.get_paths()["include"]) /
                                                                  "Python.h").exists()


@pytest.fixture(scope="module", autouse=True)
def _kernels():
    if build.load() is None:
        pytest.skip(f"the kernels could not be built here: {build.error()}")


@pytest.fixture(params=K.ISAS)
def isa(request):
    """Each build forced in turn; skipped, with the reason, where the CPU lacks its instructions."""
    if request.param not in K.supported():
        pytest.skip(f"{request.param}: {dispatch.why_unsupported(request.param)}")
    with K.forced(request.param):
        yield request.param


def sgn(t):
    return torch.where(t >= 0, 1.0, -1.0)


def test_built_where_a_compiler_is_found():
    if not _compiler():
        pytest.skip("no C++ compiler or Python headers")
    assert build.load() is not None and "portable" in K.supported()
    assert K.status() in K.ISAS


def test_sign_bits_by_hand():
    x = torch.tensor([[1.0, -2.0, 0.0, -0.0, -1e-40, 3.0] + [0.5] * 60 + [-7.0]])  # 67 values: 2 words
    p = K.pack_signs(x)
    assert p.words.shape == (1, 2) and p.length == 67 and p.words.dtype == torch.int64
    # bit 1 = negative: values 1 (-2) and 4 (-1e-40); -0.0 is +1; value 66 (-7) is bit 2 of word 1
    assert p.words[0, 0].item() == 0b10010 and p.words[0, 1].item() == 0b100  # bits past 67 are 0


def test_sign_and_pack_reads_once_and_gives_both(isa):
    from suite.kernels.packing import sign_and_pack
    from suite.quant import sign_pm1

    w = torch.randn(37, 130)
    w.view(-1)[:4] = torch.tensor([0.0, -0.0, -1e-40, float("nan")])
    signs, p = sign_and_pack(w)
    assert torch.equal(signs, sign_pm1(w)) and torch.equal(p.words, K.pack_signs(w).words)


def test_codes_by_hand():
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0, 2.5, 1.5, 9.0, -4.0]])
    p = K.pack_codes(x, 2)  # round half to even: 2.5 -> 2, 1.5 -> 2; clamped: 9 -> 3, -4 -> 0
    codes = [0, 1, 2, 3, 2, 2, 3, 0]
    assert p.words.shape == (2, 1, 1)
    assert p.words[0, 0, 0].item() == sum((c & 1) << j for j, c in enumerate(codes))
    assert p.words[1, 0, 0].item() == sum((c >> 1) << j for j, c in enumerate(codes))


def test_xnor_by_hand():
    a = torch.tensor([[1.0, -1.0, 1.0], [-3.0, -0.5, 2.0]])
    b = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])
    # rows: (+ - +).(+ + +) = 1, (+ - +).(- - +) = -1 + 1 + 1 = 1; (- - +).(+ + +) = -1, (- - +).(- - +) = 3
    assert K.xnor_matmul(K.pack_signs(a), K.pack_signs(b)).tolist() == [[1, 1], [-1, 3]]


@pytest.mark.parametrize("k", ODD)
@pytest.mark.parametrize("m,n", [(1, 1), (1, 37), (5, 1), (13, 70)])
def test_xnor_matmul_is_exact(isa, m, n, k):
    torch.manual_seed(k + m + n)
    x, w = torch.randn(m, k), torch.randn(n, k)
    x.view(-1)[::7] = 0.0  # sign(0) = +1
    want = (sgn(x).double() @ sgn(w).double().T).int()
    got = K.xnor_matmul(K.pack_signs(x), K.pack_signs(w))
    assert got.dtype == torch.int32 and torch.equal(got, want)
    assert torch.equal(K.xnor_matmul(K.pack_signs(x), K.pack_signs(w, "panels")), want)


def test_xnor_matmul_on_many_rows_and_threads(isa):
    torch.manual_seed(0)
    x, w = torch.randn(203, 1000), torch.randn(1030, 1000)  # several panels and row tiles per thread
    assert torch.equal(K.xnor_matmul(K.pack_signs(x), K.pack_signs(w)), (sgn(x) @ sgn(w).T).int())


@pytest.mark.parametrize("bits_a,bits_b", [(1, 1), (2, 1), (1, 2), (2, 2), (3, 4), (8, 1)])
@pytest.mark.parametrize("k", [1, 65, 1000])
def test_bitserial_matmul_is_exact(isa, bits_a, bits_b, k):
    torch.manual_seed(bits_a * 10 + bits_b + k)
    ca = torch.randint(0, 2**bits_a, (7, k)).float()
    cb = torch.randint(0, 2**bits_b, (33, k)).float()
    got = K.bitserial_matmul(K.pack_codes(ca, bits_a), K.pack_codes(cb, bits_b))
    assert torch.equal(got, (ca.double() @ cb.double().T).int())


@pytest.mark.parametrize("k", [1, 65, 1000])
def test_masked_signs_products_are_exact(isa, k):
    """Signs some of which are 0 (dropout after a sign): the zeros contribute nothing."""
    torch.manual_seed(k)
    x, w = sgn(torch.randn(13, k)) * (torch.rand(13, k) > 0.4), torch.randn(37, k)
    got = linear(K.pack_masked_signs(x * 2.0), K.MaskedSigns(2.0), K.pack_signs(w, "panels"), K.Signs())
    assert torch.equal(got, 2.0 * (x @ sgn(w).T))


def test_the_builds_agree_on_the_float_epilogue():
    """The float outputs (integer times scale plus bias) are computed alike by every build."""
    torch.manual_seed(0)
    x, w, alpha, b = torch.randn(9, 300), torch.randn(40, 300), torch.rand(40), torch.randn(40)
    outs = []
    for name in K.supported():
        with K.forced(name):
            outs.append(linear(K.pack_signs(x), K.Signs(), K.pack_signs(w, "panels"), K.Signs(), b, alpha))
    want = (sgn(x) @ sgn(w).T) * alpha + b
    assert all(torch.allclose(o, want, rtol=1e-6, atol=1e-5) for o in outs)
    assert all(torch.equal(o, outs[0]) for o in outs)


@pytest.mark.parametrize("x_bits,w_bits", [(2, 0), (4, 0), (2, 2), (3, 2)])
def test_lowbit_linear_matches_the_float_product(isa, x_bits, w_bits):
    torch.manual_seed(x_bits + w_bits)
    n_x = 2**x_bits - 1
    xq = torch.randint(0, n_x + 1, (6, 130)).float() / n_x
    if w_bits:
        n_w = 2**w_bits - 1
        wq = torch.randint(0, n_w + 1, (20, 130)).float() * 2 / n_w - 1
        w_form, wp = K.Codes(w_bits, 2 / n_w, -1.0), K.pack_codes(wq, w_bits, n_w / 2, n_w / 2, "panels")
    else:
        wq, w_form = sgn(torch.randn(20, 130)), K.Signs()
        wp = K.pack_signs(wq, "panels")
    y = linear(K.pack_codes(xq, x_bits, n_x), K.Codes(x_bits, 1 / n_x), wp, w_form, None, 0.5)
    assert torch.allclose(y.double(), 0.5 * xq.double() @ wq.double().T, rtol=1e-6, atol=1e-5)


CONVS = [  # (C_in, C_out, kernel, stride, padding, dilation, groups, size)
    (64, 16, 3, 1, 1, 1, 1, 9),
    (70, 12, 3, 2, 1, 1, 2, 11),    # 35 channels a group: a partial word
    (130, 8, 5, 1, 2, 2, 1, 12),    # dilation, 3 words a tap
    (8, 8, 3, 1, 1, 1, 8, 7),       # depthwise
    (3, 5, 1, 1, 0, 1, 1, 4),       # 1x1, no padding
    (16, 4, (3, 2), (2, 1), (1, 2), (1, 2), 1, 10),  # rectangular everything
    (32, 8, 3, 1, 3, 1, 1, 5),      # padding larger than the kernel's reach: all-padding taps
]


@pytest.mark.parametrize("cin,cout,ks,stride,pad,dil,groups,size", CONVS)
def test_binary_conv2d_matches_the_emulated_convolution(isa, cin, cout, ks, stride, pad, dil, groups, size):
    """conv2d on +-1 floats with zero padding (the emulated layer) gives the same integers."""
    torch.manual_seed(cin + cout)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x, w = torch.randn(3, cin, size, size + 1), torch.randn(cout, cin // groups, kh, kw)
    want = F.conv2d(sgn(x), sgn(w), None, stride, pad, dil, groups)
    assert torch.equal(K.binary_conv2d(x, w, stride, pad, dil, groups), want.int())


@pytest.mark.parametrize("cin,cout,ks,stride,pad,dil,groups,size", CONVS)
def test_masked_binary_conv2d_matches_the_emulated_convolution(isa, cin, cout, ks, stride, pad, dil, groups, size):
    """Dropout after the sign: zeros among the signs, and the zero padding, contribute nothing."""
    torch.manual_seed(cin + cout + 1)
    kh, kw = (ks, ks) if isinstance(ks, int) else ks
    x = sgn(torch.randn(2, cin, size, size + 1)) * (torch.rand(2, cin, size, size + 1) > 0.5) * 2.0
    w = torch.randn(cout, cin // groups, kh, kw)
    want = F.conv2d(x, sgn(w), None, stride, pad, dil, groups)
    got = conv2d(x, K.MaskedSigns(2.0), pack_weights(w, K.Signs()), None, 1.0, stride, pad, dil, groups)
    assert torch.equal(got, want)


@pytest.mark.parametrize("cin,cout,ks,stride,pad,dil,groups,size", CONVS[:4])
@pytest.mark.parametrize("x_bits,w_bits", [(2, 0), (4, 0), (2, 2)])
def test_lowbit_conv2d_matches_the_emulated_convolution(isa, cin, cout, ks, stride, pad, dil, groups, size, x_bits,
                                                        w_bits):
    torch.manual_seed(cin + x_bits)
    n_x = 2**x_bits - 1
    xq = torch.randint(0, n_x + 1, (2, cin, size, size)).float() / n_x
    w = torch.randn(cout, cin // groups, ks, ks)
    if w_bits:
        n_w = 2**w_bits - 1
        wq, form = torch.randint(0, n_w + 1, w.shape).float() * 2 / n_w - 1, K.Codes(w_bits, 2 / n_w, -1.0)
    else:
        wq, form = sgn(w), K.Signs()
    cw = pack_weights(wq, form)
    want = F.conv2d(xq.double(), wq.double(), None, stride, pad, dil, groups)
    got = conv2d(xq, K.Codes(x_bits, 1 / n_x), cw, None, 1.0, stride, pad, dil, groups)
    # float rounding: of each float32 value (1/3 and 2/3 are not exact) and of the result
    bound = 1e-6 * F.conv2d(xq.double().abs(), wq.double().abs(), None, stride, pad, dil, groups) + 1e-6
    assert ((got.double() - want).abs() <= bound).all()
    # the integer part exactly: codes times sign(W), or times 2 c' - n
    ints = conv2d(xq, K.Codes(x_bits, 1 / n_x), cw, None, 1.0, stride, pad, dil, groups, integer=True)
    scale = n_x * (2**w_bits - 1 if w_bits else 1)
    assert torch.equal(ints, (want * scale).round().int())


def test_threads_follow_torch():
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch's threads are not OpenMP's")
    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert K.threads_used(64) == n
    finally:
        torch.set_num_threads(before)


def test_register_bounds_do_the_work_they_count():
    """The benchmarks' register-only bounds of the AVX-512 and AVX2 tiles' instructions (suite/kernels/
    lowbit.h) return the sum of their bit counts: the work was done, not left out by the compiler."""
    mask = 2**64 - 1

    def ones(v):
        return bin(v & mask).count("1")

    def avx512_word(seed):  # 4 rows x 4 vectors of 8 equal lanes, as the loop sets them up
        return 8 * sum(ones((seed + r + 1) ^ (seed * (2 * v + 3))) for r in range(4) for v in range(4))

    def avx2_word(seed):  # 6 rows, A's and B's nibbles, 4 equal lanes
        low, x = 0x0F0F0F0F0F0F0F0F, seed * 7
        return 4 * sum(ones(((seed + r) ^ x) & low) + ones(((seed * 3 + r) ^ (x >> 4)) & low) for r in range(6))

    builds = [(i, f) for i, name, f in ((3, "avx512_vpopcntdq", avx512_word), (1, "avx2", avx2_word))
              if name in K.supported()]
    if not builds:
        pytest.skip("neither AVX-512 VPOPCNTDQ nor AVX2 on this CPU")
    before = torch.get_num_threads()
    try:
        for isa, per_word in builds:
            for threads, words in ((1, 1000), (2, 1001)):
                torch.set_num_threads(threads)
                shares = [words * (t + 1) // threads - words * t // threads for t in range(threads)]
                want = sum(n * per_word(t + 1) for t, n in enumerate(shares))
                assert build.load().xnor_register_bound(words, isa) == want, (isa, threads)
    finally:
        torch.set_num_threads(before)


def test_forcing_a_build_the_cpu_lacks_is_refused(monkeypatch):
    missing = [name for name in K.ISAS if name not in K.supported()]
    with pytest.raises(ValueError, match="unknown build"):
        with K.forced("sse9"):
            pass
    if not missing:
        monkeypatch.setattr(dispatch, "supported", lambda: ("portable",))
        missing = ["avx2"]
    with pytest.raises(RuntimeError, match="cannot force"):
        with K.forced(missing[0]):
            pass


def test_the_environment_variable_chooses_or_turns_off(monkeypatch):
    for name, value in (("_env_read", False), ("_env_choice", None), ("_current", None)):
        monkeypatch.setattr(dispatch, name, value)  # restored after the test
    monkeypatch.setenv(dispatch.ENV, "portable")
    assert dispatch.chosen() == "portable" and dispatch.status() == "portable"
    monkeypatch.setattr(dispatch, "_env_read", False)
    monkeypatch.setenv(dispatch.ENV, "off")
    assert dispatch.chosen() is None and dispatch.status().startswith("off")
    monkeypatch.setattr(dispatch, "_env_read", False)
    monkeypatch.setenv(dispatch.ENV, "fast")
    with pytest.raises(ValueError, match="SUITE_KERNELS_ISA"):
        dispatch.chosen()


def test_mismatched_operands_are_refused():
    a, b = K.pack_signs(torch.randn(2, 64)), K.pack_signs(torch.randn(3, 65))
    with pytest.raises(ValueError, match="differ in length"):
        K.xnor_matmul(a, b)
    with pytest.raises(ValueError, match="takes signs"):
        K.xnor_matmul(K.pack_codes(torch.ones(2, 8), 2), K.pack_signs(torch.ones(2, 8)))
    with pytest.raises(ValueError, match="unsigned codes"):
        K.bitserial_matmul(a, a)
