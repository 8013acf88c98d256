# Sources of the pager (offload/, DESIGN.md "Offload"), compiled into libspillway (one per line).
set(SPILLWAY_OFFLOAD_SOURCES
  host_pool.cpp
  next_use.cpp
  numa.cpp
  pager.cpp
  pager_nvme.cpp
  pager_policy.cpp
  nvme_store.cpp
  crc32c.cpp
)
