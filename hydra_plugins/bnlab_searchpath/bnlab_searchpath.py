"""Makes the repository's experiments/ folder a Hydra config group, from any directory.

Hydra finds this plugin through the `hydra_plugins` namespace package. Adding a folder
that *holds* experiments/ to the search path makes `experiments=<study>` and
`experiments=glob(*)` work (a `hydra.searchpath` entry does not: Hydra bug #1942). The
folder added, `studies/`, holds only a link to the checkout's experiments/: every folder
of yaml files on the search path is a config group in `--help` and tab completion.
"""
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from bnlab.resolvers import STUDIES_ROOT


class BnlabSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="bnlab-experiments", path=f"file://{STUDIES_ROOT}")
