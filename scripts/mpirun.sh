#!/usr/bin/env bash
# mpirun with the settings these machines need: allowed as root (containers, CI) and allowed to
# place more ranks than cores (4 ranks on a 2-core machine). Usage: scripts/mpirun.sh -np 4 CMD...
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# Keep Open MPI quiet about missing high-speed fabrics on a laptop or CI box.
export OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader,tcp}
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
exec mpirun "$@"
