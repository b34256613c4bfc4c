"""Package discovery for the wheel and the sdist (everything else is in pyproject.toml).

The repository keeps `zoo/` and `export/` at its top level, but they install only as `mtmm_keras.zoo` and
`mtmm_keras.export`: nothing named plain `zoo` or `export` lands in site-packages. `find_packages` discovers
every package under each of the three roots, so a new subpackage ships without anyone listing it
(tests/installed/ runs the built wheel from outside the tree to prove it).
"""

from setuptools import find_packages, setup

# import name -> folder in the repository
ROOTS = {"mtmm_keras": "mtmm_keras", "mtmm_keras.zoo": "zoo", "mtmm_keras.export": "export"}


def discovered(package: str, folder: str) -> list[str]:
    return [package] + [f"{package}.{sub}" for sub in find_packages(folder)]


setup(
    packages=[name for package, folder in ROOTS.items() for name in discovered(package, folder)],
    package_dir={package: folder for package, folder in ROOTS.items()},
)
