// numa.h — the host NUMA node nearest a GPU (hwloc: the PCI device's first non-I/O ancestor and
// its NUMA nodes), where the host tier creates its pinned chunks.
#pragma once

#include <string>

namespace spillway::offload {

// The OS index of the NUMA node nearest the PCI device `pci_bus_id` ("0000:3b:00.0"). An empty
// id (the simulator), a machine without NUMA information, or a device hwloc cannot find give
// node 0. *how says which (for `spillway info` and the pager's start-up line).
int NearestNumaNode(const std::string& pci_bus_id, std::string* how);

}  // namespace spillway::offload
