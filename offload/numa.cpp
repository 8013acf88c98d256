// numa.cpp — NearestNumaNode through hwloc (see numa.h).
#include "offload/numa.h"

#include <hwloc.h>

namespace spillway::offload {

int NearestNumaNode(const std::string& pci_bus_id, std::string* how) {
  if (pci_bus_id.empty()) {
    *how = "node 0 (no PCI device: simulator)";
    return 0;
  }
  hwloc_topology_t topo = nullptr;
  if (hwloc_topology_init(&topo) != 0) {
    *how = "node 0 (hwloc_topology_init failed)";
    return 0;
  }
  hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  int node = 0;
  if (hwloc_topology_load(topo) != 0) {
    *how = "node 0 (hwloc_topology_load failed)";
  } else if (hwloc_obj_t dev = hwloc_get_pcidev_by_busidstring(topo, pci_bus_id.c_str());
             dev == nullptr) {
    *how = "node 0 (hwloc does not see PCI device " + pci_bus_id + ")";
  } else {
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, dev);
    const int first = anc && anc->nodeset ? hwloc_bitmap_first(anc->nodeset) : -1;
    if (first < 0) {
      *how = "node 0 (no NUMA node above PCI device " + pci_bus_id + ")";
    } else {
      node = first;
      *how = "node " + std::to_string(node) + " (hwloc: nearest PCI device " + pci_bus_id + ")";
    }
  }
  hwloc_topology_destroy(topo);
  return node;
}

}  // namespace spillway::offload
