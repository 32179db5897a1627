"""A wheelhouse for set-up on top of a Python that already has torch (a container, a module).

``tools/make_wheelhouse.sh DIR --on-top-of FILE`` uses this. FILE is what that Python has,
as ``python -m pip list --format=freeze`` prints it there (``name==version`` lines; a bare
``name`` means any version). Set-up with ``HAT_MM_SYSTEM_TORCH=1`` keeps torch, torchvision
and numpy as found and lets mmengine use an OpenCV already there, so the wheelhouse needs only
the packages that Python lacks: megabytes instead of gigabytes.

    python tools/wheelhouse_on_top.py requirements FILE REQS    # rewrite REQS for that Python
    python tools/wheelhouse_on_top.py select FILE REPORT REQS   # what to carry (REPORT: pip
                                                                # install --dry-run --report)
"""
import argparse
import json
import os.path as osp
import re
import sys

from packaging.utils import canonicalize_name as canonical

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from mmcv_variant import KEPT_AS_FOUND, OPENCV_DISTS  # noqa: E402

# Always carried, whatever the Python has: set-up installs them first, with a version range
# (setuptools < 81 still has pkg_resources, which mmcv's setup.py needs).
BUILD_TOOLS = ('pip', 'setuptools', 'wheel', 'packaging', 'ninja')


def read_installed(path):
    """{canonical name: version or None} from a ``pip list --format=freeze`` file."""
    installed = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line or line.startswith('-'):  # comments, `-e` editables: not carried anyway
                continue
            m = re.fullmatch(r'([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:(?:==|@)\s*(.*))?', line)
            if not m:
                raise SystemExit(f'[wheelhouse_on_top] {path}:{n}: cannot read {line!r}; give '
                                 'the output of `python -m pip list --format=freeze` there')
            version = m.group(2)
            installed[canonical(m.group(1))] = (
                version.strip() if version and '://' not in version else None)
    if 'torch' not in installed:
        raise SystemExit(f'[wheelhouse_on_top] {path} lists no torch: it is for set-up with '
                         'HAT_MM_SYSTEM_TORCH=1 on a Python that has torch and torchvision')
    return installed


def target_requirements(lines, installed):
    """requirements.txt lines for that Python: no torch or torchvision, numpy as found."""
    out = []
    for line in lines:
        m = re.match(r'\s*([A-Za-z0-9][A-Za-z0-9._-]*)', line)
        name = canonical(m.group(1)) if m and not line.lstrip().startswith('#') else None
        if name in KEPT_AS_FOUND and name in installed:
            if name == 'numpy' and installed[name]:
                out.append(f'numpy=={installed[name]}\n')
            continue
        out.append(line)
    return out


def pins_of(lines):
    """{canonical name: version} of the ``name==version`` lines."""
    pins = {}
    for line in lines:
        m = re.match(r'\s*([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)', line)
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def select(report, installed, pinned):
    """``name==version`` of the packages to carry, from a ``pip install --dry-run --report``
    of the requirements: what that Python lacks, or has at another version than a pin asks,
    and the build tools; not opencv-python when it has an OpenCV."""
    has_opencv = any(canonical(n) in installed for n in OPENCV_DISTS)
    carry = []
    for item in report['install']:
        name, version = canonical(item['metadata']['name']), item['metadata']['version']
        there = name in installed and (name not in pinned or pinned[name] == installed[name])
        if name in BUILD_TOOLS or not (there or (has_opencv and name == 'opencv-python')):
            carry.append(f'{name}=={version}')
    return carry


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('requirements', help='rewrite a requirements file for that Python')
    c.add_argument('installed')
    c.add_argument('requirements')
    c = sub.add_parser('select', help='print the name==version lines to carry')
    c.add_argument('installed')
    c.add_argument('report', help='the JSON of pip install --dry-run --report')
    c.add_argument('requirements', help='the rewritten requirements (their pins are kept)')
    a = p.parse_args(argv)
    installed = read_installed(a.installed)
    with open(a.requirements) as f:
        lines = f.readlines()
    if a.cmd == 'requirements':
        with open(a.requirements, 'w') as f:
            f.writelines(target_requirements(lines, installed))
        return
    with open(a.report) as f:
        report = json.load(f)
    carry = select(report, installed, pins_of(lines))
    print('\n'.join(carry))
    print(f"[wheelhouse_on_top] {len(carry)} of {len(report['install'])} packages to carry; the "
          'rest are there already', file=sys.stderr)


if __name__ == '__main__':
    main()
