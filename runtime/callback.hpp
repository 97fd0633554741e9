// The type-erased callback of the asynchronous calls (cache::put_async and
// the others): a move-only std::function whose callable lives inside it when
// it is small. libstdc++'s std::function keeps only trivially copyable
// callables of 16 bytes inline, so every callback holding a shared_ptr (a
// server's reply handle, a promise) cost a heap block, allocated on the
// caller's thread and freed on the shard's: one of the allocations of each
// SET through karlton-node (docs/plans/resp-set-path.md, R6).
#pragma once

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace karlton::detail {

template <class Signature>
class callback_fn;

/// `void(Arg)`, move-only. A callable of up to `inline_size` bytes that
/// moves without throwing is stored in place; a larger one on the heap.
template <class Arg>
class callback_fn<void(Arg)> {
public:
  /// Bytes of callable kept in place.
  static constexpr size_t inline_size = 48;

  /// Empty: calling it does nothing.
  callback_fn() noexcept = default;

  /// Takes `f` (any callable with `void(Arg)`), in place when it fits.
  /// An empty std::function or a null function pointer makes it empty too,
  /// as std::function does.
  template <class F,
            class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, callback_fn>>>
  callback_fn(F&& f) { // NOLINT: converting, as std::function's
    using T = std::decay_t<F>;
    if constexpr (may_be_empty<T>)
      if (!f) return;
    if constexpr (stores_inline<T>) {
      new (buffer_) T(std::forward<F>(f));
      ops_ = &inline_ops<T>;
    } else {
      new (buffer_) T*(new T(std::forward<F>(f)));
      ops_ = &heap_ops<T>;
    }
  }

  /// Takes `other`'s callable; `other` is left empty.
  callback_fn(callback_fn&& other) noexcept : ops_(other.ops_) {
    if (ops_) ops_->relocate(other.buffer_, buffer_);
    other.ops_ = nullptr;
  }

  /// Drops the callable held, then takes `other`'s; `other` is left empty.
  callback_fn& operator=(callback_fn&& other) noexcept {
    if (this != &other) {
      reset();
      ops_ = other.ops_;
      if (ops_) ops_->relocate(other.buffer_, buffer_);
      other.ops_ = nullptr;
    }
    return *this;
  }

  callback_fn(const callback_fn&) = delete;
  callback_fn& operator=(const callback_fn&) = delete;

  ~callback_fn() { reset(); }

  /// True if it holds a callable.
  explicit operator bool() const noexcept { return ops_ != nullptr; }

  /// Whether a callable of type T is kept in place (no heap block).
  template <class T>
  static constexpr bool stores_inline =
    sizeof(T) <= inline_size &&
    alignof(T) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<T>;

  /// Calls the callable; an empty callback does nothing (an asynchronous
  /// call given none wants no answer).
  void operator()(Arg arg) {
    if (ops_) ops_->call(buffer_, std::forward<Arg>(arg));
  }

private:
  template <class T>
  struct is_function : std::false_type {};
  template <class S>
  struct is_function<std::function<S>> : std::true_type {};
  template <class T>
  static constexpr bool may_be_empty =
    std::is_pointer_v<T> || std::is_member_pointer_v<T> || is_function<T>::value;

  /// The callable (or the pointer to it) that a constructor or `relocate`
  /// placed in `self`.
  template <class T>
  static T* held(void* self) noexcept {
    return std::launder(static_cast<T*>(self));
  }

  struct ops {
    void (*call)(void* self, Arg&& arg);
    /// Moves the callable from `from` to `to` and destroys it at `from`.
    void (*relocate)(void* from, void* to) noexcept;
    void (*destroy)(void* self) noexcept;
  };

  template <class T>
  static inline const ops inline_ops{
    [](void* self, Arg&& arg) { (*held<T>(self))(std::forward<Arg>(arg)); },
    [](void* from, void* to) noexcept {
      auto* f = held<T>(from);
      new (to) T(std::move(*f));
      f->~T();
    },
    [](void* self) noexcept { held<T>(self)->~T(); }};

  template <class T>
  static inline const ops heap_ops{
    [](void* self, Arg&& arg) { (**held<T*>(self))(std::forward<Arg>(arg)); },
    [](void* from, void* to) noexcept { new (to) T*(*held<T*>(from)); },
    [](void* self) noexcept { delete *held<T*>(self); }};

  void reset() noexcept {
    if (ops_) ops_->destroy(buffer_);
    ops_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char buffer_[inline_size];
  const ops* ops_ = nullptr;
};

} // namespace karlton::detail
