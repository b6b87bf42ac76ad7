//! The VM's one allocator, for Rust and for the C library alike.
//!
//! Rust's default on `wasm32-wasip1` is wasi-libc's dlmalloc, which V8 compiles in every VM
//! with the rest of the module. Talc does the same job in a third of the code (measured in
//! docs/PERFORMANCE.md). The C library still allocates now and then (its copy of the
//! environment, `getcwd` while a panic is reported): those calls land in the C entry points
//! below, which wrap talc too. They are every symbol dlmalloc's object defines, so that the
//! linker never pulls it in: were it needed for one more, the build would fail on a
//! duplicate symbol rather than carry two allocators.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::null_mut;

static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Talc behind entry points kept out of line: inlined, its paths were copied into every
/// `drop` of the engine's types, and the module grew by 4 KB.
struct OutOfLine;

#[global_allocator]
static ALLOCATOR: OutOfLine = OutOfLine;

// SAFETY: each method forwards its caller's contract to talc's `GlobalAlloc`, unchanged.
unsafe impl GlobalAlloc for OutOfLine {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe { TALC.alloc(layout) }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe { TALC.alloc_zeroed(layout) }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { TALC.dealloc(ptr, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract.
        unsafe { TALC.realloc(ptr, layout, new_size) }
    }
}

/// What C's `malloc` promises on wasm32 (`alignof(max_align_t)`), and the room before each C
/// allocation that remembers its layout for `free`: the block's size, then its alignment.
const HEADER: usize = 16;

/// The block behind a C allocation of `size` bytes aligned to `align`: the header, padded to
/// the alignment, then the bytes.
fn block_layout(size: usize, align: usize) -> Option<Layout> {
    let offset = align.max(HEADER);
    Layout::from_size_align(size.checked_add(offset)?, offset).ok()
}

/// Records the block's layout just before the bytes C sees, and returns their address.
///
/// # Safety
/// `block` is null or a live allocation of `layout`, built by `block_layout`.
unsafe fn after_header(block: *mut u8, layout: Layout) -> *mut u8 {
    if block.is_null() {
        return null_mut();
    }
    // SAFETY: the block starts with `layout.align()` (at least `HEADER`) bytes before the
    // caller's, so the two words written sit inside it, aligned.
    unsafe {
        let bytes = block.add(layout.align());
        bytes.cast::<usize>().sub(2).write(layout.size());
        bytes.cast::<usize>().sub(1).write(layout.align());
        bytes
    }
}

/// The block and layout behind bytes `after_header` returned.
///
/// # Safety
/// `bytes` came from one of the C entry points below and is not yet freed.
unsafe fn block_of(bytes: *mut u8) -> (*mut u8, Layout) {
    // SAFETY: `after_header` wrote the layout in the two words before `bytes`, and the block
    // starts `align` bytes before them; a layout it made is valid.
    unsafe {
        let size = bytes.cast::<usize>().sub(2).read();
        let align = bytes.cast::<usize>().sub(1).read();
        (bytes.sub(align), Layout::from_size_align_unchecked(size, align))
    }
}

fn allocate(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let Some(layout) = block_layout(size, align) else { return null_mut() };
    // SAFETY: the layout's size is non-zero (it holds the header); a null answer is passed on.
    unsafe { after_header(if zeroed { ALLOCATOR.alloc_zeroed(layout) } else { ALLOCATOR.alloc(layout) }, layout) }
}

#[no_mangle]
extern "C" fn malloc(size: usize) -> *mut u8 {
    allocate(size, HEADER, false)
}

#[no_mangle]
extern "C" fn calloc(count: usize, size: usize) -> *mut u8 {
    count.checked_mul(size).map_or(null_mut(), |total| allocate(total, HEADER, true))
}

#[no_mangle]
extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    allocate(size, align, false)
}

/// # Safety
/// C's contract: `out` is writable.
#[no_mangle]
unsafe extern "C" fn posix_memalign(out: *mut *mut u8, align: usize, size: usize) -> i32 {
    const ENOMEM: i32 = 48; // WASI's errno numbering
    const EINVAL: i32 = 28;
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<usize>()) {
        return EINVAL;
    }
    let bytes = allocate(size, align, false);
    if bytes.is_null() {
        return ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { out.write(bytes) };
    0
}

/// # Safety
/// C's contract: `bytes` is null or from one of these entry points, not yet freed.
#[no_mangle]
unsafe extern "C" fn free(bytes: *mut u8) {
    if bytes.is_null() {
        return;
    }
    // SAFETY: the caller's contract.
    unsafe {
        let (block, layout) = block_of(bytes);
        ALLOCATOR.dealloc(block, layout);
    }
}

/// # Safety
/// As `free`.
#[no_mangle]
unsafe extern "C" fn realloc(bytes: *mut u8, size: usize) -> *mut u8 {
    if bytes.is_null() {
        return malloc(size);
    }
    // SAFETY: the caller's contract.
    let (block, layout) = unsafe { block_of(bytes) };
    let Some(grown) = block_layout(size, layout.align()) else { return null_mut() };
    // SAFETY: `block` is live with `layout`; the new size is non-zero and a valid layout.
    unsafe { after_header(ALLOCATOR.realloc(block, layout, grown.size()), grown) }
}

/// # Safety
/// As `free`.
#[no_mangle]
unsafe extern "C" fn malloc_usable_size(bytes: *mut u8) -> usize {
    if bytes.is_null() {
        return 0;
    }
    // SAFETY: the caller's contract.
    let (_, layout) = unsafe { block_of(bytes) };
    layout.size() - layout.align()
}

// The names wasi-libc's own code calls the allocator by.
#[no_mangle]
extern "C" fn __libc_malloc(size: usize) -> *mut u8 {
    malloc(size)
}

#[no_mangle]
extern "C" fn __libc_calloc(count: usize, size: usize) -> *mut u8 {
    calloc(count, size)
}

/// # Safety
/// As `free`.
#[no_mangle]
unsafe extern "C" fn __libc_free(bytes: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe { free(bytes) }
}
