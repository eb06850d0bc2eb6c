// Sapora guest: the camera's JPEG encoder, off the page's main thread.
//
// Why a worker: Chromium encodes a main-thread `canvas.toBlob` JPEG in idle
// tasks and starts it unprompted only after 1 s (4 s on Android) when the page
// gives it no idle time (blink's CanvasAsyncBlobCreator,
// kIdleTaskStartTimeoutDelayMs). A page that draws and plays a meeting is
// rarely idle, so its captures stalled. In a worker, OffscreenCanvas's
// convertToBlob encodes at once.
//
// In:  { bitmap: ImageBitmap, id: u32 } (the bitmap is transferred and closed here)
// Out: { id, full: ArrayBuffer, thumb: ArrayBuffer } (JPEG, full size and half
//      size; both transferred), or { id, error: string }.

const FULL_QUALITY = 0.7;
const THUMB_QUALITY = 0.6;
let full = null;
let thumb = null;

self.onmessage = async (event) => {
  const { bitmap, id } = event.data;
  try {
    const w = bitmap.width, h = bitmap.height;
    if (!full || full.width !== w || full.height !== h) {
      full = new OffscreenCanvas(w, h);
      thumb = new OffscreenCanvas(Math.max(1, w >> 1), Math.max(1, h >> 1));
    }
    full.getContext("2d").drawImage(bitmap, 0, 0, w, h);
    thumb.getContext("2d").drawImage(bitmap, 0, 0, thumb.width, thumb.height);
    bitmap.close();
    const [fb, tb] = await Promise.all([
      full.convertToBlob({ type: "image/jpeg", quality: FULL_QUALITY }),
      thumb.convertToBlob({ type: "image/jpeg", quality: THUMB_QUALITY }),
    ]);
    const [fa, ta] = await Promise.all([fb.arrayBuffer(), tb.arrayBuffer()]);
    self.postMessage({ id, full: fa, thumb: ta }, [fa, ta]);
  } catch (e) {
    self.postMessage({ id, error: String(e) });
  }
};
