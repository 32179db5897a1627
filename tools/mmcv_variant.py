"""Which mmcv build the environment needs, where its wheel is cached, and the checks around it.

``tools/setup_env.sh`` calls this file (``python tools/mmcv_variant.py COMMAND ...``) with the
environment's interpreter; the functions are tested in ``tests/test_setup_env.py``.

mmcv 2.1.0 has no wheel for current torch and is built from source against the torch it will
run with. A build is one of two variants:

- CPU ops (the default): the GPU is hidden from the build, so mmcv's ``setup.py`` takes its
  CPU branch; on CUDA tensors the detection ops then need hat_mm's torchvision fallback.
- CUDA ops (``HAT_MM_MMCV_CUDA=1``): compiled by ``nvcc`` for an explicit list of GPU
  architectures (``TORCH_CUDA_ARCH_LIST``).

The built wheel is cached under a key naming the variant and the torch it was built against,
e.g. ``torch-2.12.1+cu130-cpuops`` or ``torch-2.12.1+cu130-cuda13.0-sm80-sm90``, so a wheel of
one variant is never installed for another.
"""
import argparse
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import zipfile

# torch 2.14 and later need C++20, which mmcv 2.1.0's build (C++17) cannot compile; hat_mm
# uses torch.serialization.safe_globals (torch 2.5). OpenMMLab's mmpretrain 1.2, mmdet 3.3 and
# mmseg 1.2 ask for torch >= 1.8, a weaker bound.
TORCH_MIN = (2, 5)
TORCH_MAX = (2, 13)
SUPPORTED_TORCH = (f'{TORCH_MIN[0]}.{TORCH_MIN[1]} <= torch < '
                   f'{TORCH_MAX[0]}.{TORCH_MAX[1] + 1}')
# Parts of the index's CUDA toolkit that compile mmcv's kernels (the runtime comes with torch).
TOOLKIT_EXTRAS = 'nvcc,cccl,crt,nvvm'
# Byte strings found only in an mmcv extension compiled with CUDA: the CUDA libraries it links,
# the section nvcc puts device code in, the call that registers that code.
CUDA_MARKERS = (b'libc10_cuda.so', b'libtorch_cuda.so', b'libcudart.so', b'.nv_fatbin',
                b'__cudaRegisterFatBinary')
# ... and the CPU kernels of the ops mmdet needs, present in every build with ops.
CPU_OPS_MARKERS = (b'roi_align_forward_cpu', b'nms_cpu')


class SetupError(Exception):
    """A problem of the environment, with the fix in its message."""


def torch_release(version):
    """(major, minor) of a torch version string ('2.5.0a0+872d972.nv24.08' -> (2, 5))."""
    m = re.match(r'(\d+)\.(\d+)', version)
    if not m:
        raise SetupError(f'cannot read the torch version {version!r}')
    return int(m.group(1)), int(m.group(2))


def check_torch_range(version, where='', system=False):
    """Fail unless ``version`` is a torch that mmcv 2.1.0 and hat_mm support."""
    if TORCH_MIN <= torch_release(version) <= TORCH_MAX:
        return
    fix = ('use a torch module or container with a torch in that range, or unset '
           'HAT_MM_SYSTEM_TORCH to install the pinned torch into the environment'
           if system else 'install a torch in that range')
    raise SetupError(f'torch {version}{" at " + where if where else ""} is outside the '
                     f'supported range {SUPPORTED_TORCH} (mmcv 2.1.0 cannot build against '
                     f'torch 2.14 or later: it forces C++17 and those need C++20; hat_mm needs '
                     f'torch.serialization.safe_globals, torch 2.5). Fix: {fix}.')


def normalize_arch_list(arch_list):
    """``TORCH_CUDA_ARCH_LIST`` ('9.0', '8.0;9.0+PTX', '8.6 9.0a') as a sorted key part.

    >>> normalize_arch_list('9.0+PTX;8.0 8.0')
    'sm80-sm90+ptx'
    """
    parts = set()
    for token in re.split(r'[;,\s]+', arch_list.strip()):
        if not token:
            continue
        m = re.fullmatch(r'(\d+)\.(\d+)([a-z]?)(\+PTX)?', token, flags=re.IGNORECASE)
        if not m:
            raise SetupError(f'TORCH_CUDA_ARCH_LIST entry {token!r} is not of the form 9.0, '
                             '8.6+PTX or 9.0a (compute capability): set e.g. '
                             'TORCH_CUDA_ARCH_LIST="8.0;9.0"')
        parts.add(f'sm{m.group(1)}{m.group(2)}{m.group(3).lower()}'
                  + ('+ptx' if m.group(4) else ''))
    if not parts:
        raise SetupError('TORCH_CUDA_ARCH_LIST is empty: set it to the compute capabilities '
                         'to build for, e.g. TORCH_CUDA_ARCH_LIST=9.0 for H100')
    return '-'.join(sorted(parts))


def variant_key(torch_version, cuda_version=None, arch_list=None):
    """Cache key of an mmcv build: CPU ops, or CUDA ops with the toolkit and architectures."""
    if cuda_version is not None and not arch_list:
        raise SetupError('a CUDA-ops key needs the architecture list')
    ops = 'cpuops' if cuda_version is None else \
        f'cuda{cuda_version}-{normalize_arch_list(arch_list)}'
    return 'torch-' + re.sub(r'[^A-Za-z0-9.+_-]', '_', torch_version) + '-' + ops


def wheel_kind(path):
    """'cuda' or 'cpu' for an mmcv wheel with ops, from its compiled extension."""
    with zipfile.ZipFile(path) as zf:
        exts = [n for n in zf.namelist()
                if re.fullmatch(r'mmcv/_ext[^/]*\.(so|pyd)', n)]
        if not exts:
            raise SetupError(f'{path} has no compiled mmcv._ext: it is not an mmcv build '
                             'with ops; delete it')
        data = zf.read(exts[0])
    if any(m in data for m in CUDA_MARKERS):
        return 'cuda'
    if all(m in data for m in CPU_OPS_MARKERS):
        return 'cpu'
    raise SetupError(f'{path}: its mmcv._ext has neither CUDA code nor the CPU kernels of '
                     'roi_align and nms; delete it')


def compatible_wheel(folder, name='mmcv', version=None):
    """The wheel of ``name`` in ``folder`` that this interpreter can install, or None."""
    from packaging.tags import sys_tags
    from packaging.utils import canonicalize_name, parse_wheel_filename
    if not osp.isdir(folder):
        return None
    supported = list(sys_tags())
    rank = {t: i for i, t in enumerate(supported)}
    best = None
    for fname in sorted(os.listdir(folder)):
        if not fname.endswith('.whl'):
            continue
        try:
            wname, wver, _, tags = parse_wheel_filename(fname)
        except ValueError:
            continue
        if canonicalize_name(wname) != canonicalize_name(name):
            continue
        if version is not None and str(wver) != version:
            continue
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, osp.join(folder, fname))
    return best[1] if best else None


def migrate_legacy(legacy_dir, target_dir, version):
    """Copy a wheel of the old torch-only cache key into the CPU-ops key, if it is one.

    Returns (path or None, what happened). A wheel with CUDA code is left where it is: its
    architectures are unknown, so it cannot be given a CUDA key either.
    """
    old = compatible_wheel(legacy_dir, version=version)
    if old is None:
        return None, f'no wheel for this Python in {legacy_dir}'
    kind = wheel_kind(old)
    if kind != 'cpu':
        return None, f'{old} has CUDA code for unknown architectures: not reused'
    os.makedirs(target_dir, exist_ok=True)
    dst = osp.join(target_dir, osp.basename(old))
    tmp = dst + '.part'
    shutil.copyfile(old, tmp)
    os.replace(tmp, dst)
    return dst, f'{old} is a CPU-ops build: copied to {dst}'


def visible_arch_list():
    """The compute capabilities of the visible GPUs, as a TORCH_CUDA_ARCH_LIST."""
    import torch
    if not torch.cuda.is_available():
        raise SetupError('HAT_MM_MMCV_CUDA=1 and no GPU is visible, so the architectures to '
                         'build for are unknown: set TORCH_CUDA_ARCH_LIST, e.g. '
                         'TORCH_CUDA_ARCH_LIST=9.0 (H100), 8.0 (A100), "8.0;9.0" for both')
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ';'.join(f'{a}.{b}' for a, b in sorted(caps))


def nvcc_cuda_home(nvcc):
    """The toolkit folder an ``nvcc`` on PATH belongs to (it may be a wrapper script)."""
    try:
        out = subprocess.run([nvcc, '--dryrun', '-x', 'cu', '-c', os.devnull, '-o', os.devnull],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'^#\$ TOP=(.+)$', out.stdout + out.stderr, flags=re.MULTILINE)
    return osp.realpath(m.group(1).strip()) if m else osp.dirname(osp.dirname(nvcc))


def system_cuda_home():
    """A CUDA toolkit on this machine, looked for as torch does: CUDA_HOME / CUDA_PATH, the
    ``nvcc`` on PATH, ``/usr/local/cuda``. None if there is none."""
    for var in ('CUDA_HOME', 'CUDA_PATH'):
        if os.environ.get(var):
            home = os.environ[var]
            if not osp.exists(osp.join(home, 'bin', 'nvcc')):
                raise SetupError(f'{var}={home} has no bin/nvcc: point it at a CUDA toolkit, '
                                 f'or unset it (with HAT_MM_CUDA_TOOLKIT=pip the package '
                                 "index's toolkit is installed into the environment)")
            return home
    nvcc = shutil.which('nvcc')
    if nvcc:
        return nvcc_cuda_home(nvcc)
    return '/usr/local/cuda' if osp.exists('/usr/local/cuda/bin/nvcc') else None


def nvcc_version(cuda_home):
    """'13.0' from ``CUDA_HOME/bin/nvcc --version``."""
    nvcc = osp.join(cuda_home, 'bin', 'nvcc')
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise SetupError(f'cannot run {nvcc} ({e}): the toolkit at {cuda_home} is incomplete')
    m = re.search(r'release (\d+\.\d+)', out.stdout)
    if not m:
        raise SetupError(f'{nvcc} --version printed no "release X.Y": {out.stdout.strip()!r}')
    return m.group(1)


def check_toolkit_matches(toolkit_version, torch_cuda, cuda_home):
    """Fail if the toolkit cannot build for this torch (another CUDA major version, as torch's
    own check); a different minor version only warns (CUDA minor-version compatibility)."""
    if torch_cuda is None:
        raise SetupError('HAT_MM_MMCV_CUDA=1 but this torch has no CUDA (a CPU-only build): '
                         'install a CUDA build of torch, or unset HAT_MM_MMCV_CUDA')
    if toolkit_version.split('.')[0] != torch_cuda.split('.')[0]:
        raise SetupError(f'the CUDA toolkit at {cuda_home} is CUDA {toolkit_version} but torch '
                         f'was built with CUDA {torch_cuda}: set CUDA_HOME to a CUDA '
                         f'{torch_cuda} toolkit, or set HAT_MM_CUDA_TOOLKIT=pip to install '
                         f"the package index's CUDA {torch_cuda} toolkit into the environment")
    if toolkit_version != torch_cuda:
        print(f'[setup_env] warning: CUDA toolkit {toolkit_version} at {cuda_home}, torch built '
              f'with CUDA {torch_cuda}; HAT_MM_CUDA_TOOLKIT=pip uses the matching one',
              file=sys.stderr)


def toolkit_requirement(torch_requires, torch_cuda):
    """The pip requirement of the index's CUDA toolkit matching torch's CUDA runtime.

    ``torch_requires``: torch's Requires-Dist lines; torch's own pin on ``cuda-toolkit`` (its
    runtime) gives the exact version, else ``torch.version.cuda``'s release line.
    """
    for req in torch_requires or ():
        m = re.match(r'cuda-toolkit(\[[^\]]*\])?\s*==\s*([\d.]+)', req)
        if m:
            return f'cuda-toolkit[{TOOLKIT_EXTRAS}]=={m.group(2)}'
    if not torch_cuda:
        raise SetupError('this torch has no CUDA: there is no toolkit to match')
    return f'cuda-toolkit[{TOOLKIT_EXTRAS}]=={torch_cuda}.*'


def wheel_requires(wheel):
    """Requires-Dist lines of a wheel file."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith('.dist-info/METADATA'))
        text = zf.read(meta).decode('utf-8', 'replace')
    return [line.split(':', 1)[1].strip() for line in text.splitlines()
            if line.startswith('Requires-Dist:')]


def link_missing(src, dst):
    """Symlink into folder ``dst`` every entry of folder ``src`` it lacks (recursing into
    folders both have); returns how many links were made."""
    made = 0
    for name in os.listdir(src):
        s, d = osp.join(src, name), osp.join(dst, name)
        if not osp.lexists(d):
            os.symlink(s, d)
            made += 1
        elif osp.isdir(s) and osp.isdir(d) and not osp.islink(d):
            made += link_missing(s, d)
    return made


def pip_cuda_home(site_packages, torch_cuda, search_paths=()):
    """CUDA_HOME of the index's toolkit (``site-packages/nvidia/cu<major>``), with the
    unversioned ``libcudart.so`` link that linking mmcv's extension needs.

    The CUDA runtime (``cuda_runtime.h``, ``libcudart``) comes with torch. With a system torch
    (HAT_MM_SYSTEM_TORCH=1) it is in torch's site-packages, not in the environment's where the
    toolkit went, so the ``nvidia/cu<major>`` trees found on ``search_paths`` (``sys.path``)
    are linked into the toolkit's, entry by entry where it lacks them."""
    major = 'cu' + torch_cuda.split('.')[0]
    home = osp.join(site_packages, 'nvidia', major)
    if not osp.exists(osp.join(home, 'bin', 'nvcc')):
        raise SetupError(f"{home}/bin/nvcc missing after installing the index's CUDA toolkit")
    for path in search_paths:
        other = osp.join(path, 'nvidia', major)
        if osp.isdir(other) and osp.realpath(other) != osp.realpath(home):
            made = link_missing(other, home)
            if made:
                print(f"[setup_env] linked {made} entries of torch's CUDA runtime ({other}) "
                      f'into the toolkit at {home}', file=sys.stderr)
    lib = osp.join(home, 'lib')
    link = osp.join(lib, 'libcudart.so')
    if not osp.exists(link):
        versioned = sorted(f for f in os.listdir(lib) if re.fullmatch(r'libcudart\.so\.\d+', f)) \
            if osp.isdir(lib) else []
        if not versioned:
            raise SetupError(f'no libcudart.so.N in {lib} nor in the nvidia/{major}/lib of '
                             "torch's site-packages: is torch a CUDA build?")
        if osp.lexists(link):  # a dangling link of an earlier set-up
            os.remove(link)
        os.symlink(versioned[-1], link)
    return home


# Kept as found with HAT_MM_SYSTEM_TORCH=1: torch, torchvision, and the numpy that they and the
# rest of the container were built against.
KEPT_AS_FOUND = ('torch', 'torchvision', 'numpy')
OPENCV_DISTS = ('opencv-python', 'opencv-python-headless', 'opencv-contrib-python',
                'opencv-contrib-python-headless')


def found_packages():
    """Lines for set-up with a system torch: ``name==version`` of the packages kept as found,
    then ``# opencv name==version`` for an OpenCV already installed (mmengine then uses it
    instead of asking for opencv-python, which would shadow it)."""
    from importlib.metadata import PackageNotFoundError, version
    lines = []
    for name in KEPT_AS_FOUND:
        try:
            lines.append(f'{name}=={version(name)}')
        except PackageNotFoundError:
            pass
    for name in OPENCV_DISTS:
        try:
            lines.append(f'# opencv {name}=={version(name)}')
            break
        except PackageNotFoundError:
            pass
    return lines


def torch_facts():
    import torch
    return torch.__version__, torch.version.cuda, osp.dirname(osp.dirname(torch.__file__))


def _cli(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('torch', help='check the torch in range; print version, CUDA, site-packages')
    c.add_argument('--system', action='store_true')
    sub.add_parser('found', help='packages kept as found with a system torch (and an OpenCV)')
    c = sub.add_parser('key', help='print the cache key of the requested build')
    c.add_argument('--cuda-version')
    c.add_argument('--arch-list')
    sub.add_parser('arch-list', help='TORCH_CUDA_ARCH_LIST, else the visible GPUs')
    sub.add_parser('system-cuda-home', help="a CUDA toolkit on this machine ('' if none)")
    c = sub.add_parser('check-toolkit', help='print the toolkit CUDA version; fail if unusable')
    c.add_argument('cuda_home')
    c = sub.add_parser('toolkit-requirement', help="pip requirement of the index's toolkit")
    c.add_argument('--torch-wheel', help='read torch metadata from this wheel, not the install')
    sub.add_parser('pip-cuda-home', help="CUDA_HOME of the index's toolkit in this environment")
    c = sub.add_parser('find-wheel', help="a wheel for this Python in a folder ('' if none)")
    c.add_argument('folder')
    c.add_argument('--name', default='mmcv')
    c.add_argument('--version')
    c = sub.add_parser('wheel-kind', help="'cpu' or 'cuda' for an mmcv wheel")
    c.add_argument('wheel')
    c = sub.add_parser('migrate-legacy', help='reuse a CPU-ops wheel of the old cache key')
    c.add_argument('legacy_dir')
    c.add_argument('target_dir')
    c.add_argument('--version', required=True)
    a = p.parse_args(argv)

    if a.cmd == 'torch':
        version, cuda, site = torch_facts()
        check_torch_range(version, where=site, system=a.system)
        print(version, cuda or 'none', site)
    elif a.cmd == 'found':
        print('\n'.join(found_packages()))
    elif a.cmd == 'key':
        print(variant_key(torch_facts()[0], a.cuda_version, a.arch_list))
    elif a.cmd == 'arch-list':
        given = os.environ.get('TORCH_CUDA_ARCH_LIST', '').strip()
        arch = given or visible_arch_list()
        normalize_arch_list(arch)  # fail early on a malformed list
        print(arch)
    elif a.cmd == 'system-cuda-home':
        print(system_cuda_home() or '')
    elif a.cmd == 'check-toolkit':
        version = nvcc_version(a.cuda_home)
        check_toolkit_matches(version, torch_facts()[1], a.cuda_home)
        print(version)
    elif a.cmd == 'toolkit-requirement':
        if a.torch_wheel:
            reqs = wheel_requires(a.torch_wheel)
            cuda = None
        else:
            from importlib.metadata import requires
            reqs, cuda = requires('torch'), torch_facts()[1]
        print(toolkit_requirement(reqs, cuda))
    elif a.cmd == 'pip-cuda-home':
        import sysconfig
        print(pip_cuda_home(sysconfig.get_paths()['purelib'], torch_facts()[1], sys.path))
    elif a.cmd == 'find-wheel':
        print(compatible_wheel(a.folder, a.name, a.version) or '')
    elif a.cmd == 'wheel-kind':
        print(wheel_kind(a.wheel))
    elif a.cmd == 'migrate-legacy':
        path, what = migrate_legacy(a.legacy_dir, a.target_dir, a.version)
        print(f'[setup_env] legacy cache: {what}', file=sys.stderr)
        print(path or '')


def main(argv=None):
    try:
        _cli(sys.argv[1:] if argv is None else argv)
    except SetupError as e:
        print(f'[setup_env] ERROR: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
