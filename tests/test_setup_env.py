"""Set-up: mmcv build variants, their cache and stamp, system torch, offline install.

The shell script runs for real with a stand-in for the environment's interpreter that logs
each pip call instead of running it (and leaves a wheel where a build would), and runs
everything else (the variant helper, the imports, the device check) with this interpreter.
"""
import importlib.machinery
import importlib.util
import os
import os.path as osp
import shutil
import stat
import subprocess
import sys
import zipfile
from importlib.metadata import version as dist_version

import pytest
import torch
from packaging.tags import sys_tags

from tools import mmcv_variant as mv

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SETUP = osp.join(ROOT, 'tools', 'setup_env.sh')
MMCV_VER = '2.1.0'
TAG = next(iter(sys_tags()))  # a tag this interpreter installs
CPU_EXT = b'\0'.join(mv.CPU_OPS_MARKERS)
CUDA_EXT = CPU_EXT + b'\0libcudart.so.13\0.nv_fatbin'


def make_wheel(folder, ext_bytes, tag=TAG, name='mmcv', version=MMCV_VER):
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{name}-{version}-{tag}.whl')
    with zipfile.ZipFile(path, 'w') as zf:
        if ext_bytes is not None:
            zf.writestr(f'mmcv/_ext{importlib.machinery.EXTENSION_SUFFIXES[0]}', ext_bytes)
        zf.writestr(f'{name}-{version}.dist-info/METADATA', f'Name: {name}\nVersion: {version}\n')
    return path


# ------------------------------------------------------------------ the variant helper

def test_variant_keys_name_the_build():
    cpu = mv.variant_key('2.12.1+cu130')
    assert cpu == 'torch-2.12.1+cu130-cpuops'
    cuda = mv.variant_key('2.12.1+cu130', '13.0', '9.0')
    assert cuda == 'torch-2.12.1+cu130-cuda13.0-sm90'
    # same architectures written differently: one key; other architectures or CUDA: another
    assert mv.variant_key('2.12.1', '13.0', '9.0;8.0') == mv.variant_key('2.12.1', '13.0', '8.0 9.0')
    assert mv.variant_key('2.12.1', '13.0', '8.0;9.0+PTX').endswith('-sm80-sm90+ptx')
    assert mv.variant_key('2.12.1', '13.0', '9.0a').endswith('-sm90a')
    assert len({cpu, cuda, mv.variant_key('2.12.1+cu130', '13.0', '8.0'),
                mv.variant_key('2.12.1+cu130', '12.8', '9.0'),
                mv.variant_key('2.13.0+cu130')}) == 5
    assert mv.variant_key('2.5.0a0+872d972e41.nv24.08') == 'torch-2.5.0a0+872d972e41.nv24.08-cpuops'
    assert '/' not in mv.variant_key('2.5.0/../x')
    for bad in ('sm_90', 'Hopper', ';'):
        with pytest.raises(mv.SetupError, match='TORCH_CUDA_ARCH_LIST'):
            mv.normalize_arch_list(bad)


@pytest.mark.parametrize('version,ok', [
    ('2.4.1', False), ('2.5.0a0+872d972e41.nv24.08', True), ('2.12.1+cu130', True),
    ('2.13.1', True), ('2.14.0', False), ('3.0.0', False), ('1.13.1', False)])
def test_torch_range(version, ok):
    if ok:
        mv.check_torch_range(version)
    else:
        with pytest.raises(mv.SetupError, match=r'2\.5 <= torch < 2\.14') as e:
            mv.check_torch_range(version, system=True)
        assert 'HAT_MM_SYSTEM_TORCH' in str(e.value)


@pytest.mark.parametrize('fake_version,ok', [('2.14.0', False), ('2.13.1', True), ('2.4.0', False)])
def test_torch_range_cli_on_a_system_torch(tmp_path, fake_version, ok):
    pkg = tmp_path / 'torch'
    pkg.mkdir()
    (pkg / '__init__.py').write_text(f'__version__ = {fake_version!r}\nclass version:\n    cuda = None\n')
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'mmcv_variant.py'), 'torch', '--system'],
                       capture_output=True, text=True, env=env)
    assert (r.returncode == 0) == ok, r.stderr
    if ok:
        assert r.stdout.split()[:2] == [fake_version, 'none']
    else:
        assert f'torch {fake_version} at {tmp_path}' in r.stderr and 'supported range' in r.stderr


def test_wheel_kind(tmp_path):
    assert mv.wheel_kind(make_wheel(tmp_path / 'a', CPU_EXT)) == 'cpu'
    assert mv.wheel_kind(make_wheel(tmp_path / 'b', CUDA_EXT)) == 'cuda'
    with pytest.raises(mv.SetupError, match='no compiled mmcv._ext'):
        mv.wheel_kind(make_wheel(tmp_path / 'c', None))
    with pytest.raises(mv.SetupError, match='neither CUDA code nor'):
        mv.wheel_kind(make_wheel(tmp_path / 'd', b'something else'))


def test_installed_mmcv_build_is_recognised():
    """The markers on a real build: the mmcv of this environment, as set-up recorded it."""
    marker = osp.join(sys.prefix, '.hat_mm_mmcv_variant')
    key = open(marker).read().strip() if osp.exists(marker) else '-cpuops'
    data = open(importlib.util.find_spec('mmcv._ext').origin, 'rb').read()
    assert all(m in data for m in mv.CPU_OPS_MARKERS)
    assert any(m in data for m in mv.CUDA_MARKERS) == (not key.endswith('-cpuops')), key


def test_compatible_wheel_picks_this_python(tmp_path):
    folder = str(tmp_path)
    make_wheel(folder, CPU_EXT, tag='cp27-cp27mu-linux_x86_64')
    assert mv.compatible_wheel(folder) is None
    mine = make_wheel(folder, CPU_EXT)
    make_wheel(folder, CPU_EXT, version='2.0.0')
    assert mv.compatible_wheel(folder, version=MMCV_VER) == mine
    assert mv.compatible_wheel(folder, name='torch') is None
    assert mv.compatible_wheel(str(tmp_path / 'missing')) is None


def test_legacy_cache_is_migrated_only_when_cpu_ops(tmp_path):
    legacy, target = str(tmp_path / 'torch-2.12.1'), str(tmp_path / 'torch-2.12.1-cpuops')
    make_wheel(legacy, CUDA_EXT)
    path, what = mv.migrate_legacy(legacy, target, MMCV_VER)
    assert path is None and 'CUDA code' in what and not osp.exists(target)
    old = make_wheel(legacy, CPU_EXT)
    path, what = mv.migrate_legacy(legacy, target, MMCV_VER)
    assert path == osp.join(target, osp.basename(old)) and 'copied' in what
    assert open(path, 'rb').read() == open(old, 'rb').read() and osp.exists(old)


def test_toolkit_requirement_follows_torch():
    assert mv.toolkit_requirement(
        ['filelock', 'cuda-toolkit[cudart,cufft]==13.0.2; platform_system == "Linux"'], '13.0') \
        == 'cuda-toolkit[nvcc,cccl,crt,nvvm]==13.0.2'
    assert mv.toolkit_requirement(['filelock'], '12.8') == 'cuda-toolkit[nvcc,cccl,crt,nvvm]==12.8.*'
    with pytest.raises(mv.SetupError):
        mv.toolkit_requirement([], None)
    from importlib.metadata import requires
    if torch.version.cuda and any(r.startswith('cuda-toolkit') for r in requires('torch') or ()):
        req = mv.toolkit_requirement(requires('torch'), torch.version.cuda)
        assert req.startswith('cuda-toolkit[nvcc,cccl,crt,nvvm]==' + torch.version.cuda)


def test_toolkit_version_check(capsys):
    with pytest.raises(mv.SetupError, match='HAT_MM_CUDA_TOOLKIT=pip'):
        mv.check_toolkit_matches('12.4', '13.0', '/usr/local/cuda')
    with pytest.raises(mv.SetupError, match='CPU-only'):
        mv.check_toolkit_matches('13.0', None, '/usr/local/cuda')
    mv.check_toolkit_matches('13.1', '13.0', '/opt/cuda')
    assert 'warning' in capsys.readouterr().err


def _script(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_toolkit_discovery(tmp_path, monkeypatch):
    # nvcc on PATH may be a wrapper script: the toolkit is where nvcc says it is
    real = tmp_path / 'cuda-13.0'
    (real / 'bin').mkdir(parents=True)
    _script(real / 'bin' / 'nvcc', '#!/bin/sh\necho "Cuda compilation tools, release 13.0, V13.0.88"\n')
    (tmp_path / 'wrap').mkdir()
    _script(tmp_path / 'wrap' / 'nvcc', f'#!/bin/sh\necho "#$ TOP={real}/bin/.." >&2\n')
    monkeypatch.delenv('CUDA_HOME', raising=False)
    monkeypatch.delenv('CUDA_PATH', raising=False)
    monkeypatch.setenv('PATH', f'{tmp_path / "wrap"}:/usr/bin:/bin')
    assert mv.system_cuda_home() == str(real)
    assert mv.nvcc_version(str(real)) == '13.0'
    monkeypatch.setenv('CUDA_HOME', str(tmp_path / 'nothing'))
    with pytest.raises(mv.SetupError, match='has no bin/nvcc'):
        mv.system_cuda_home()


def test_pip_toolkit_gets_the_unversioned_cudart_link(tmp_path):
    home = tmp_path / 'nvidia' / 'cu13'
    (home / 'bin').mkdir(parents=True)
    (home / 'lib').mkdir()
    (home / 'bin' / 'nvcc').write_text('')
    (home / 'lib' / 'libcudart.so.13').write_text('')
    assert mv.pip_cuda_home(str(tmp_path), '13.0') == str(home)
    assert os.readlink(home / 'lib' / 'libcudart.so') == 'libcudart.so.13'
    assert mv.pip_cuda_home(str(tmp_path), '13.0') == str(home)  # second call: link kept
    with pytest.raises(mv.SetupError, match='missing'):
        mv.pip_cuda_home(str(tmp_path), '12.8')


def test_pip_toolkit_gets_the_runtime_of_a_system_torch(tmp_path):
    """HAT_MM_SYSTEM_TORCH=1: the toolkit is installed into the environment, the runtime
    (cuda_runtime.h, libcudart.so.13) is in torch's own site-packages, found through sys.path
    and linked into the toolkit's tree where it lacks them."""
    env, system = tmp_path / 'env', tmp_path / 'system'
    home = env / 'nvidia' / 'cu13'
    for folder in ('bin', 'lib', 'include/crt'):
        (home / folder).mkdir(parents=True)
    (home / 'bin' / 'nvcc').write_text('')
    (home / 'include' / 'crt' / 'host_config.h').write_text('toolkit')
    with pytest.raises(mv.SetupError, match='no libcudart.so.N'):
        mv.pip_cuda_home(str(env), '13.0', [str(tmp_path / 'elsewhere')])
    runtime = system / 'nvidia' / 'cu13'
    for folder in ('lib', 'include/crt', 'include/cooperative_groups'):
        (runtime / folder).mkdir(parents=True)
    (runtime / 'lib' / 'libcudart.so.13').write_text('')
    (runtime / 'include' / 'cuda_runtime.h').write_text('runtime')
    (runtime / 'include' / 'crt' / 'host_config.h').write_text('runtime copy')
    (runtime / 'include' / 'crt' / 'host_defines.h').write_text('runtime')
    assert mv.pip_cuda_home(str(env), '13.0', [str(env), str(system)]) == str(home)
    assert (home / 'include' / 'cuda_runtime.h').read_text() == 'runtime'
    assert (home / 'include' / 'crt' / 'host_defines.h').read_text() == 'runtime'
    assert (home / 'include' / 'crt' / 'host_config.h').read_text() == 'toolkit'  # kept
    assert (home / 'include' / 'cooperative_groups').is_dir()
    assert os.readlink(home / 'lib' / 'libcudart.so') == 'libcudart.so.13'
    assert (home / 'lib' / 'libcudart.so').exists()  # resolves into torch's runtime
    assert mv.pip_cuda_home(str(env), '13.0', [str(env), str(system)]) == str(home)  # again


# ------------------------------------------------------------------ the script itself

FAKE_PYTHON = r'''#!/usr/bin/env bash
# The environment's python for the test: pip calls are logged (a build leaves a wheel).
if [[ "$1" == "-m" && "$2" == "pip" ]]; then
  echo "PIP CVD=${CUDA_VISIBLE_DEVICES-unset} FORCE_CUDA=${FORCE_CUDA-unset} ARCH=${TORCH_CUDA_ARCH_LIST-unset} CUDA_HOME=${CUDA_HOME-unset} LDFLAGS=${LDFLAGS-unset} :: ${*:3}" >> "$FAKE_LOG"
  args=("${@:3}")
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
      -c) echo "CONSTRAINTS $(tr '\n' ' ' < "${args[i+1]}")" >> "$FAKE_LOG" ;;
      -r) echo "REQUIREMENTS $(grep -v '^#' "${args[i+1]}" | tr '\n' ' ')" >> "$FAKE_LOG" ;;
      -w) mkdir -p "${args[i+1]}" && cp "$FAKE_BUILT_WHEEL" "${args[i+1]}/" ;;
    esac
  done
  exit 0
fi
if [[ "$2" == found && -n "${FAKE_FOUND-}" ]]; then  # what a container's python would have
  printf '%s\n' "$FAKE_FOUND"
  exit 0
fi
exec "$REAL_PY" "$@"
'''


class FakeEnv:
    """A venv folder whose python is the stand-in, a cache, and a runner of setup_env.sh."""

    def __init__(self, tmp_path, system_site=False):
        self.tmp = tmp_path
        self.venv = tmp_path / 'venv'
        (self.venv / 'bin').mkdir(parents=True)
        (self.venv / 'pyvenv.cfg').write_text(
            f'include-system-site-packages = {"true" if system_site else "false"}\n')
        self.python = _script(self.venv / 'bin' / 'python', FAKE_PYTHON)
        self.cache = tmp_path / 'cache'
        self.log = tmp_path / 'pip.log'
        self.built = make_wheel(str(tmp_path / 'built'), CPU_EXT)

    def run(self, **env_vars):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(('HAT_MM_', 'CUDA_', 'TORCH_CUDA', 'PIP_'))}
        env.update(HAT_MM_VENV=str(self.venv), HAT_MM_CACHE=str(self.cache), PYTHON=self.python,
                   FAKE_LOG=str(self.log), FAKE_BUILT_WHEEL=self.built, REAL_PY=sys.executable)
        env.update(env_vars)
        self.log.write_text('')
        r = subprocess.run(['bash', SETUP], capture_output=True, text=True, env=env, cwd=ROOT)
        self.pip = self.log.read_text().splitlines()
        return r

    def pip_lines(self, word):
        """The pip calls with ``word`` among their arguments ('wheel': the builds)."""
        if word == 'wheel':
            return [line for line in self.pip if ' :: wheel ' in line]
        return [line for line in self.pip if word in line.split(' :: ', 1)[-1].split()]

    @property
    def stamp(self):
        return (self.venv / '.hat_mm_setup_done').read_text()

    @property
    def marker(self):
        return (self.venv / '.hat_mm_mmcv_variant').read_text().strip()


def test_setup_variants_cache_and_stamp(tmp_path):
    if torch.version.cuda is None:
        pytest.skip('needs a torch with CUDA (the pinned one) for the CUDA-ops request')
    env = FakeEnv(tmp_path)
    torch_ver = torch.__version__
    cpu_key = mv.variant_key(torch_ver)
    cuda_key = mv.variant_key(torch_ver, torch.version.cuda, '9.0')
    # the old cache (torch version only) holds a CUDA build: not reused for CPU ops
    make_wheel(str(env.cache / 'wheels' / f'torch-{torch_ver}'), CUDA_EXT)

    r = env.run()
    assert r.returncode == 0, r.stderr
    assert 'has CUDA code for unknown architectures' in r.stderr
    builds = env.pip_lines('wheel')
    assert len(builds) == 1 and 'CVD= FORCE_CUDA=0' in builds[0] and '--no-binary mmcv' in builds[0]
    assert 'LDFLAGS=-Wl,--strip-debug ::' in builds[0]  # a small extension
    cached = env.cache / 'wheels' / cpu_key / osp.basename(env.built)
    assert cached.exists()
    assert any(str(cached) in line for line in env.pip_lines('--force-reinstall'))
    assert env.marker == cpu_key and 'mmcv_cuda=0' in env.stamp
    assert f'torch={dist_version("torch")}' in env.stamp
    assert 'passed: True' in r.stderr  # the device check ran
    assert not any('--no-index' in line for line in env.pip)

    r = env.run()  # everything in place: nothing to do
    assert r.returncode == 0 and env.pip == [] and r.stderr == ''

    # CUDA ops from a (stand-in) system toolkit: another key, never the CPU-ops wheel
    toolkit = tmp_path / 'cuda'
    (toolkit / 'bin').mkdir(parents=True)
    _script(toolkit / 'bin' / 'nvcc',
            f'#!/bin/sh\necho "Cuda compilation tools, release {torch.version.cuda}, V0"\n')
    cuda_wheel = make_wheel(str(env.cache / 'wheels' / cuda_key), CUDA_EXT)
    stamp_cpu = env.stamp
    r = env.run(HAT_MM_MMCV_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0', CUDA_HOME=str(toolkit))
    assert r.returncode == 0, r.stderr
    installs = env.pip_lines('--force-reinstall')
    assert len(installs) == 1 and installs[0].endswith(cuda_wheel) and not env.pip_lines('wheel')
    assert env.marker == cuda_key and env.stamp != stamp_cpu and 'mmcv_cuda=1 arch=9.0' in env.stamp

    # back to CPU ops: the cached CPU-ops wheel comes back, no build
    r = env.run()
    assert r.returncode == 0, r.stderr
    installs = env.pip_lines('--force-reinstall')
    assert len(installs) == 1 and installs[0].endswith(str(cached)) and not env.pip_lines('wheel')
    assert env.marker == cpu_key and env.stamp == stamp_cpu

    # a toolkit of another CUDA major version fails at once, with the fix
    _script(toolkit / 'bin' / 'nvcc', '#!/bin/sh\necho "Cuda compilation tools, release 11.8, V0"\n')
    r = env.run(HAT_MM_MMCV_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0', CUDA_HOME=str(toolkit))
    assert r.returncode == 1 and 'HAT_MM_CUDA_TOOLKIT=pip' in r.stderr
    assert env.marker == cpu_key and env.stamp == stamp_cpu


def test_setup_system_torch_from_a_wheelhouse(tmp_path):
    env = FakeEnv(tmp_path, system_site=True)
    house = tmp_path / 'house'
    house.mkdir()
    make_wheel(str(env.cache / 'wheels' / mv.variant_key(torch.__version__)), CPU_EXT)
    r = env.run(HAT_MM_SYSTEM_TORCH='1', HAT_MM_WHEELHOUSE=str(house))
    assert r.returncode == 0, r.stderr
    assert env.pip and all(f'--no-index --find-links {house}' in line
                           for line in env.pip if line.startswith('PIP'))
    pins = [line for line in env.pip if line.startswith('CONSTRAINTS')]
    assert pins and all(f'torch=={dist_version("torch")} ' in line
                        and f'torchvision=={dist_version("torchvision")} ' in line for line in pins)
    # torch and torchvision are never asked for: only constrained to what was found
    for line in env.pip:
        if line.startswith('PIP'):
            args = line.split(' :: ', 1)[1].split()
            assert not {'torch', 'torchvision'} & set(args), line
    assert 'system_torch=1' in env.stamp
    # $PYTHON (here: the stand-in, which runs this interpreter) is a venv: its site-packages,
    # where torch is, are linked into the new environment
    pth = (env.venv / 'lib' / ('python%d.%d' % sys.version_info[:2]) / 'site-packages'
           / '_hat_mm_system_torch.pth')
    if sys.prefix != sys.base_prefix:
        import sysconfig
        assert pth.read_text().split() == list(dict.fromkeys(
            sysconfig.get_paths()[k] for k in ('purelib', 'platlib')))
    else:
        assert not pth.exists()


@pytest.mark.parametrize('opencv', ['opencv-python-headless==5.0.0', None])
def test_system_torch_keeps_numpy_and_opencv_as_found(tmp_path, opencv):
    """A container's numpy (other than the pinned one) is kept, never asked for; its OpenCV,
    whatever the distribution's name, serves mmengine instead of opencv-python."""
    env = FakeEnv(tmp_path, system_site=True)
    make_wheel(str(env.cache / 'wheels' / mv.variant_key(torch.__version__)), CPU_EXT)
    found = [f'torch=={dist_version("torch")}', f'torchvision=={dist_version("torchvision")}',
             'numpy==2.5.2'] + ([f'# opencv {opencv}'] if opencv else [])
    r = env.run(HAT_MM_SYSTEM_TORCH='1', FAKE_FOUND='\n'.join(found))
    assert r.returncode == 0, r.stderr
    pins = [line.split()[1:] for line in env.pip if line.startswith('CONSTRAINTS')]
    assert pins and all('numpy==2.5.2' in p and 'numpy==1.26.4' not in p for p in pins)
    asked = [line.split()[1:] for line in env.pip if line.startswith('REQUIREMENTS')]
    asked += [line.split(' :: ', 1)[1].split() for line in env.pip if line.startswith('PIP')]
    # asked for: no torch, and numpy only unpinned (as a dependency; the constraint holds it)
    assert not any(a.startswith(('numpy==', 'torch')) for args in asked for a in args), asked
    mmengine = env.pip_lines('mmengine')
    assert mmengine and all(('--no-deps' in line) == bool(opencv) for line in mmengine)
    if opencv:
        assert f'{opencv} (for mmengine' in r.stderr
        deps = [a for a in asked if 'addict' in a and 'rich' in a]  # mmengine's own, read back
        assert deps and not any('opencv' in a.lower() for d in deps for a in d)


def test_found_packages_reads_the_interpreter():
    lines = mv.found_packages()
    assert lines[:3] == [f'{n}=={dist_version(n)}' for n in ('torch', 'torchvision', 'numpy')]
    cv = [n for n in mv.OPENCV_DISTS if _installed(n)]
    assert lines[3:] == ([f'# opencv {cv[0]}=={dist_version(cv[0])}'] if cv else [])


def _installed(name):
    try:
        dist_version(name)
        return True
    except Exception:  # noqa: BLE001
        return False


def test_setup_refuses_mismatches_early(tmp_path):
    env = FakeEnv(tmp_path)  # made without the system site-packages
    r = env.run(HAT_MM_SYSTEM_TORCH='1')
    assert r.returncode == 1 and 'was made with HAT_MM_SYSTEM_TORCH=0' in r.stderr
    assert env.pip == []
    house = tmp_path / 'house'
    house.mkdir()
    make_wheel(str(house), None, name='torch', tag='cp27-cp27mu-linux_x86_64')
    r = env.run(HAT_MM_WHEELHOUSE=str(house))
    assert r.returncode == 1 and 'has no torch wheel for Python' in r.stderr
    assert 'make_wheelhouse.sh' in r.stderr
    r = env.run(HAT_MM_MMCV_CUDA='yes')
    assert r.returncode == 1 and 'HAT_MM_MMCV_CUDA=yes' in r.stderr
    r = env.run(PYTHON=str(tmp_path / 'no_python'))  # before: "line 76: ...: No such file"
    assert r.returncode == 1 and f'PYTHON={tmp_path}/no_python is not an interpreter' in r.stderr


# ------------------------------------------------------------------ offline install

def test_wheelhouse_install_needs_no_index(tmp_path):
    """hat-mm and pure-Python dependencies from a folder into a fresh venv, with no index."""
    house = tmp_path / 'house'
    for name, deps in (('hatmm-offline-a', ['hatmm-offline-b>=1']), ('hatmm-offline-b', [])):
        src = tmp_path / name
        (src / name.replace('-', '_')).mkdir(parents=True)
        (src / name.replace('-', '_') / '__init__.py').write_text('')
        (src / 'pyproject.toml').write_text(
            '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{name}"\nversion = "1.0"\ndependencies = {deps!r}\n'.replace("'", '"'))
        subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                        '--no-index', str(src), '-w', str(house)], check=True)
    src = tmp_path / 'hat-mm'  # a copy: building in the checkout would leave build/ there
    shutil.copytree(osp.join(ROOT, 'hat_mm'), src / 'hat_mm',
                    ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('pyproject.toml', 'README.md'):
        shutil.copy(osp.join(ROOT, name), src)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                    '--no-index', str(src), '-w', str(house)], check=True, capture_output=True)
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith('PIP_')}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL='http://127.0.0.1:9/simple',
               PIP_DISABLE_PIP_VERSION_CHECK='1')
    pip = [sys.executable, '-m', 'pip', '--python', str(venv / 'bin' / 'python'), 'install',
           '--no-index', '--find-links', str(house)]
    r = subprocess.run(pip + ['hat-mm', 'hatmm-offline-a'], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([str(venv / 'bin' / 'python'), '-c',
                        'import importlib.metadata as m, importlib.util as u, os;'
                        'print(m.version("hat-mm"), m.version("hatmm-offline-b"),'
                        ' os.path.dirname(u.find_spec("hat_mm").origin))'],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path))
    hat_ver, b_ver, pkg = r.stdout.split()
    assert (hat_ver, b_ver) == (dist_version('hat-mm'), '1.0'), r.stderr
    assert pkg.startswith(str(venv)) and osp.exists(osp.join(pkg, 'hat_update.py'))
    r = subprocess.run(pip + ['hatmm-offline-c'], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and 'No matching distribution' in r.stderr


# ------------------------------------------------------------------ a wheelhouse on top of a torch

def test_wheelhouse_on_top_carries_only_what_is_missing(tmp_path):
    from tools import wheelhouse_on_top as ot
    have = tmp_path / 'have.txt'
    have.write_text('Torch==2.11.0\ntorchvision==0.26.0\nnumpy==2.5.2\n'
                    'opencv_python_headless==4.12.0.88\nscipy==1.16.0\ntimm==1.0.20\n'
                    'mypkg @ file:///src/mypkg\nrich\n-e git+https://x/y#egg=z\n')
    installed = ot.read_installed(str(have))
    assert installed['torch'] == '2.11.0' and installed['opencv-python-headless']
    assert installed['mypkg'] is None and installed['rich'] is None
    reqs = ['# a comment naming torch\n', 'torch==2.12.1\n', 'torchvision==0.27.1\n',
            'numpy==1.26.4\n', 'timm==1.0.31\n', 'mmengine==0.10.7\n', 'scikit-learn\n']
    rewritten = ot.target_requirements(reqs, installed)
    assert rewritten == ['# a comment naming torch\n', 'numpy==2.5.2\n', 'timm==1.0.31\n',
                         'mmengine==0.10.7\n', 'scikit-learn\n']
    report = {'install': [{'metadata': {'name': n, 'version': v}} for n, v in (
        ('torch', '2.11.0'), ('nvidia-cublas', '13.1.0'), ('numpy', '2.5.2'),
        ('opencv-python', '4.12.0.88'), ('scipy', '1.16.2'), ('timm', '1.0.31'),
        ('mmengine', '0.10.7'), ('Rich', '14.0'), ('setuptools', '80.9.0'))]}
    installed['nvidia-cublas'] = '13.1.0'
    carry = ot.select(report, installed, ot.pins_of(rewritten))
    # timm: pinned to another version than there; mmengine: missing; setuptools: a build tool
    assert carry == ['timm==1.0.31', 'mmengine==0.10.7', 'setuptools==80.9.0']
    with pytest.raises(SystemExit, match='lists no torch'):
        no_torch = tmp_path / 'no_torch.txt'
        no_torch.write_text('numpy==2.5.2\n')
        ot.read_installed(str(no_torch))
    with pytest.raises(SystemExit, match='cannot read'):
        bad = tmp_path / 'bad.txt'
        bad.write_text('torch==2.11.0\nthis is not a requirement\n')
        ot.read_installed(str(bad))


def test_make_wheelhouse_refuses_bad_on_top_arguments(tmp_path):
    script = osp.join(ROOT, 'tools', 'make_wheelhouse.sh')
    r = subprocess.run(['bash', script, str(tmp_path / 'w'), '--on-top-of', str(tmp_path / 'no')],
                       capture_output=True, text=True)
    assert r.returncode == 1 and 'pip list --format=freeze' in r.stderr
    have = tmp_path / 'have.txt'
    have.write_text('torch==2.11.0\n')
    r = subprocess.run(['bash', script, str(tmp_path / 'w'), '--on-top-of', str(have),
                        '--cuda-toolkit'], capture_output=True, text=True)
    assert r.returncode == 1 and 'HAT_MM_CUDA_TOOLKIT=system' in r.stderr
