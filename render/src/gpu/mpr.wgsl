// MPR on the GPU: one invocation writes 4 neighbouring pixels of one canvas row, packed in a
// u32, for one frame of a batch (global_invocation_id.z). Sampling, rounding and the grey
// table follow the CPU path (render/src/grid.rs, window.rs) so the outputs agree.

struct Frame {
    // Voxel coordinate of canvas pixel (0, 0) (its centre), and per pixel right / down / per
    // mm along the normal.
    v0: vec4<f32>,
    dx: vec4<f32>,
    dy: vec4<f32>,
    dn: vec4<f32>,
    // width, height, words per output row, first output word
    size: vec4<u32>,
    // slab steps, mode (0 MIP, 1 MinIP, 2 average), sampling (0 nearest, 1 trilinear), background
    slab: vec4<u32>,
    // first offset (mm) and step (mm) of the slab samples
    offsets: vec4<f32>,
};

@group(0) @binding(0) var volume: texture_3d<i32>;
@group(0) @binding(1) var<storage, read> frames: array<Frame>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

fn load(i: i32, j: i32, k: i32) -> f32 {
    return f32(textureLoad(volume, vec3<i32>(i, j, k), 0).r);
}

// Returns (value, 1) inside the volume, (0, 0) outside.
fn sample(p: vec3<f32>, trilinear: bool) -> vec2<f32> {
    let n = vec3<f32>(textureDimensions(volume));
    let last = n - vec3<f32>(1.0);
    if (any(p < vec3<f32>(-0.5)) || any(p >= last + vec3<f32>(0.5))) {
        return vec2<f32>(0.0, 0.0);
    }
    if (!trilinear) {
        let q = min(vec3<i32>(floor(p + vec3<f32>(0.5))), vec3<i32>(last));
        return vec2<f32>(load(q.x, q.y, q.z), 1.0);
    }
    let c = clamp(p, vec3<f32>(0.0), last);
    let i0 = vec3<i32>(floor(c));
    let f = c - vec3<f32>(i0);
    let i1 = min(i0 + vec3<i32>(1), vec3<i32>(last));
    let c00 = mix(load(i0.x, i0.y, i0.z), load(i1.x, i0.y, i0.z), f.x);
    let c10 = mix(load(i0.x, i1.y, i0.z), load(i1.x, i1.y, i0.z), f.x);
    let c01 = mix(load(i0.x, i0.y, i1.z), load(i1.x, i0.y, i1.z), f.x);
    let c11 = mix(load(i0.x, i1.y, i1.z), load(i1.x, i1.y, i1.z), f.x);
    return vec2<f32>(mix(mix(c00, c10, f.y), mix(c01, c11, f.y), f.z), 1.0);
}

fn grey(v: f32) -> u32 {
    // Round half up to the stored value, clamp to i16, look up the 65,536-entry table.
    let s = clamp(i32(floor(v + 0.5)), -32768, 32767);
    let idx = u32(s) & 0xffffu;
    return (table[idx >> 2u] >> ((idx & 3u) * 8u)) & 0xffu;
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let fr = frames[id.z];
    let w = fr.size.x;
    let h = fr.size.y;
    let word = id.x;
    let y = id.y;
    if (word >= fr.size.z || y >= h) {
        return;
    }
    let steps = fr.slab.x;
    let mode = fr.slab.y;
    let trilinear = fr.slab.z == 1u;
    let background = fr.slab.w;
    var packed = 0u;
    for (var b = 0u; b < 4u; b = b + 1u) {
        let x = word * 4u + b;
        if (x >= w) {
            break;
        }
        let p = fr.v0.xyz + fr.dx.xyz * f32(x) + fr.dy.xyz * f32(y);
        var acc = 0.0;
        var n = 0u;
        for (var s = 0u; s < steps; s = s + 1u) {
            let t = fr.offsets.x + fr.offsets.y * f32(s);
            let r = sample(p + fr.dn.xyz * t, trilinear);
            if (r.y > 0.0) {
                if (n == 0u) {
                    acc = r.x;
                } else if (mode == 0u) {
                    acc = max(acc, r.x);
                } else if (mode == 1u) {
                    acc = min(acc, r.x);
                } else {
                    acc = acc + r.x;
                }
                n = n + 1u;
            }
        }
        var g = background;
        if (n > 0u) {
            if (mode == 2u) {
                acc = acc / f32(n);
            }
            g = grey(acc);
        }
        packed = packed | (g << (b * 8u));
    }
    out[fr.size.w + y * fr.size.z + word] = packed;
}
