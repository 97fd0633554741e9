// The actors that touch disk: the store writer and the journal writer. Both
// are spawned detached (a thread each), because their calls block.
#pragma once

#include <memory>

#include "actors/loader_actor.hpp"
#include "stores/journal.hpp"
#include <karlton/messages/writes.hpp>
#include <karlton/stores/store.hpp>

namespace karlton {

/// Commits each `(write, items)` as one transaction of `db`.
store_writer_actor::behavior_type store_writer(store_writer_actor::pointer self,
                                               std::shared_ptr<store> db);

/// Appends each `(write, items, numbers, stored)` to `log` with one fsync (a
/// group commit); see `journal_actor`.
journal_actor::behavior_type journal_writer(journal_actor::pointer self,
                                            std::shared_ptr<journal> log);

/// A loader that reads `db`: the value, or `not_found` if it has none.
load_function store_loader(std::shared_ptr<store> db);

/// Store changes for `items`, in order.
std::vector<store_write> to_store_writes(const std::vector<shard_write>& items);

} // namespace karlton
