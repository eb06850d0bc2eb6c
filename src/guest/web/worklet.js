// Audio worklets of the browser-guest page (src/guest/web/app.js).
"use strict";

// The microphone, 128 samples per render quantum, to the main thread.
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) this.port.postMessage(ch.slice(0));
    return true;
  }
}

// Plays the mix the host sends (Float32 chunks from the main thread) from a
// queue: 40 ms are buffered before playing starts; past 200 ms the oldest
// samples are dropped, so the delay stays bounded. Reports the RMS of what
// it played about every 100 ms.
class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.queued = 0;
    this.started = false;
    this.sum = 0;
    this.count = 0;
    this.port.onmessage = (e) => {
      this.queue.push(e.data);
      this.queued += e.data.length;
      while (this.queued > sampleRate * 0.2) this.queued -= this.queue.shift().length;
    };
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.started && this.queued >= sampleRate * 0.04) this.started = true;
    let i = 0;
    while (this.started && i < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(head.length, out.length - i);
      out.set(head.subarray(0, n), i);
      i += n;
      this.queued -= n;
      if (n === head.length) this.queue.shift();
      else this.queue[0] = head.subarray(n);
    }
    if (i < out.length) {
      out.fill(0, i);
      if (this.queued === 0) this.started = false;
    }
    for (let k = 0; k < out.length; k++) this.sum += out[k] * out[k];
    this.count += out.length;
    if (this.count >= sampleRate / 10) {
      this.port.postMessage(Math.sqrt(this.sum / this.count));
      this.sum = 0;
      this.count = 0;
    }
    return true;
  }
}

registerProcessor("sapora-capture", Capture);
registerProcessor("sapora-player", Player);
