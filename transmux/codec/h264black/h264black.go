// Package h264black generates a black H.264 picture of any size: a
// parameter set pair of its own (Constrained Baseline, CAVLC), IDR
// frames and P frames that skip every macroblock. It feeds an ingest when a
// publisher's picture stops (video muted, a stalled track), so every frame
// is made once and handed out as the same bytes afterwards.
//
// The IDR codes its first macroblock as I_PCM (Y=16, Cb=Cr=128: black in
// limited range) and every other one as Intra16x16 with DC prediction and
// no residual, so the decoder copies the black of its neighbours across the
// picture: about one byte per macroblock. A P frame is one mb_skip_run
// covering the picture: a few bytes.
package h264black

import (
	"errors"
	"fmt"
)

// Limits of the sizes generated: H.264 level 5.2's largest frame is 36864
// macroblocks (4096x2304); an ingest gets what the publisher sent.
const (
	MaxWidth  = 4096
	MaxHeight = 2304
	maxMBs    = 36864
)

// Black pixel values (8 bit, limited range BT.601/709).
const (
	LumaBlack   = 16
	ChromaBlack = 128
)

// frameNumBits is log2_max_frame_num: P frames count frame_num modulo 16.
const frameNumBits = 4

// Picture is the coded black picture of one size. Its slices are NAL units
// without start codes or length prefixes, shared: callers must not modify them.
type Picture struct {
	Width, Height int
	SPS, PPS      []byte
	// IDR holds two IDR slices, idr_pic_id 0 and 1: back-to-back IDRs must
	// differ in it.
	IDR [2][]byte
	// P holds the skip frame for each frame_num (1..15 and 0, indexed by
	// frame_num).
	P [1 << frameNumBits][]byte
}

// New codes the black picture for width x height (even, at most
// MaxWidth x MaxHeight) shown at fps frames per second (which chooses the
// level; 0 means 30).
func New(width, height int, fps float64) (*Picture, error) {
	if width <= 0 || height <= 0 || width%2 != 0 || height%2 != 0 {
		return nil, fmt.Errorf("h264black: size %dx%d: want positive even dimensions", width, height)
	}
	if width > MaxWidth || height > MaxHeight {
		return nil, fmt.Errorf("h264black: size %dx%d above %dx%d", width, height, MaxWidth, MaxHeight)
	}
	if fps <= 0 {
		fps = 30
	}
	mbw, mbh := (width+15)/16, (height+15)/16
	if mbw*mbh > maxMBs {
		return nil, errors.New("h264black: picture above level 5.2's frame size")
	}
	p := &Picture{Width: width, Height: height}
	p.SPS = nal(3, 7, sps(width, height, mbw, mbh, level(mbw*mbh, fps)))
	p.PPS = nal(3, 8, pps())
	for id := range p.IDR {
		p.IDR[id] = nal(3, 5, idr(mbw, mbh, id))
	}
	for fn := range p.P {
		p.P[fn] = nal(2, 1, pskip(mbw*mbh, fn))
	}
	return p, nil
}

// levels are H.264's (Table A-1): level_idc, MaxFS, MaxMBPS.
var levels = [...]struct{ idc, fs, mbps int }{
	{10, 99, 1485}, {11, 396, 3000}, {12, 396, 6000}, {13, 396, 11880},
	{20, 396, 11880}, {21, 792, 19800}, {22, 1620, 20250}, {30, 1620, 40500},
	{31, 3600, 108000}, {32, 5120, 216000}, {40, 8192, 245760}, {42, 8704, 522240},
	{50, 22080, 589824}, {51, 36864, 983040}, {52, 36864, 2073600},
}

func level(mbs int, fps float64) byte {
	rate := int(float64(mbs)*fps + 0.5)
	for _, l := range levels {
		if mbs <= l.fs && rate <= l.mbps {
			return byte(l.idc)
		}
	}
	return 52
}

func sps(width, height, mbw, mbh int, levelIDC byte) []byte {
	var w bitWriter
	w.bits(66, 8)   // profile_idc: Baseline
	w.bits(0xc0, 8) // constraint_set0 and set1: Constrained Baseline
	w.bits(uint32(levelIDC), 8)
	w.ue(0)                                             // seq_parameter_set_id
	w.ue(frameNumBits - 4)                              // log2_max_frame_num_minus4
	w.ue(2)                                             // pic_order_cnt_type 2: output order is decoding order
	w.ue(1)                                             // max_num_ref_frames
	w.bit(false)                                        // gaps_in_frame_num_value_allowed_flag
	w.ue(uint32(mbw - 1))                               // pic_width_in_mbs_minus1
	w.ue(uint32(mbh - 1))                               // pic_height_in_map_units_minus1
	w.bit(true)                                         // frame_mbs_only_flag
	w.bit(true)                                         // direct_8x8_inference_flag
	cropX, cropY := (mbw*16-width)/2, (mbh*16-height)/2 // CropUnitX = CropUnitY = 2 in 4:2:0
	w.bit(cropX != 0 || cropY != 0)
	if cropX != 0 || cropY != 0 {
		w.ue(0)
		w.ue(uint32(cropX))
		w.ue(0)
		w.ue(uint32(cropY))
	}
	w.bit(false) // vui_parameters_present_flag: the container carries the timing
	w.trailing()
	return w.buf
}

func pps() []byte {
	var w bitWriter
	w.ue(0)      // pic_parameter_set_id
	w.ue(0)      // seq_parameter_set_id
	w.bit(false) // entropy_coding_mode_flag: CAVLC
	w.bit(false) // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)      // num_slice_groups_minus1
	w.ue(0)      // num_ref_idx_l0_default_active_minus1
	w.ue(0)      // num_ref_idx_l1_default_active_minus1
	w.bit(false) // weighted_pred_flag
	w.bits(0, 2) // weighted_bipred_idc
	w.se(0)      // pic_init_qp_minus26
	w.se(0)      // pic_init_qs_minus26
	w.se(0)      // chroma_qp_index_offset
	w.bit(true)  // deblocking_filter_control_present_flag: slices turn it off
	w.bit(false) // constrained_intra_pred_flag
	w.bit(false) // redundant_pic_cnt_present_flag
	w.trailing()
	return w.buf
}

// mbTypeI16DC is mb_type I_16x16_2_0_0: Intra16x16, DC prediction, no
// coded luma AC or chroma.
const (
	mbTypeI16DC = 3
	mbTypeIPCM  = 25
)

func idr(mbw, mbh, idrPicID int) []byte {
	var w bitWriter
	w.ue(0)                 // first_mb_in_slice
	w.ue(7)                 // slice_type: I, every slice of the picture
	w.ue(0)                 // pic_parameter_set_id
	w.bits(0, frameNumBits) // frame_num
	w.ue(uint32(idrPicID))  // idr_pic_id
	w.bit(false)            // no_output_of_prior_pics_flag
	w.bit(false)            // long_term_reference_flag
	w.se(0)                 // slice_qp_delta
	w.ue(1)                 // disable_deblocking_filter_idc: off
	for i := range mbw * mbh {
		if i == 0 {
			// The one macroblock that sets the colour: raw samples.
			w.ue(mbTypeIPCM)
			w.align()
			for range 256 {
				w.bits(LumaBlack, 8)
			}
			for range 128 {
				w.bits(ChromaBlack, 8)
			}
			continue
		}
		w.ue(mbTypeI16DC)
		w.ue(0) // intra_chroma_pred_mode: DC
		w.se(0) // mb_qp_delta
		// Intra16x16DCLevel: no coefficients. Its coeff_token table is
		// chosen by nC, the coefficient counts of the neighbouring 4x4
		// blocks: an I_PCM neighbour counts 16, the others 0, and with
		// one neighbour available nC is that neighbour's count.
		x, y := i%mbw, i/mbw
		if (x == 1 && y == 0) || (x == 0 && y == 1) {
			w.bits(0b000011, 6) // 8 <= nC: TotalCoeff 0
		} else {
			w.bit(true) // 0 <= nC < 2: TotalCoeff 0
		}
	}
	w.trailing()
	return w.buf
}

func pskip(mbs, frameNum int) []byte {
	var w bitWriter
	w.ue(0)                                // first_mb_in_slice
	w.ue(5)                                // slice_type: P, every slice of the picture
	w.ue(0)                                // pic_parameter_set_id
	w.bits(uint32(frameNum), frameNumBits) // frame_num
	w.bit(false)                           // num_ref_idx_active_override_flag
	w.bit(false)                           // ref_pic_list_modification_flag_l0
	w.bit(false)                           // adaptive_ref_pic_marking_mode_flag: sliding window
	w.se(0)                                // slice_qp_delta
	w.ue(1)                                // disable_deblocking_filter_idc: off
	w.ue(uint32(mbs))                      // mb_skip_run: the whole picture
	w.trailing()
	return w.buf
}

// nal wraps an RBSP into a NAL unit with emulation prevention.
func nal(refIdc, typ byte, rbsp []byte) []byte {
	out := make([]byte, 0, len(rbsp)+len(rbsp)/64+2)
	out = append(out, refIdc<<5|typ)
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// bitWriter writes an RBSP most significant bit first.
type bitWriter struct {
	buf  []byte
	cur  byte
	nbit uint // bits in cur
}

func (w *bitWriter) bit(b bool) {
	w.cur <<= 1
	if b {
		w.cur |= 1
	}
	w.nbit++
	if w.nbit == 8 {
		w.buf = append(w.buf, w.cur)
		w.cur, w.nbit = 0, 0
	}
}

func (w *bitWriter) bits(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		w.bit(v>>uint(i)&1 == 1)
	}
}

// ue writes an unsigned exp-Golomb code.
func (w *bitWriter) ue(v uint32) {
	x := uint64(v) + 1
	n := 0
	for t := x; t > 1; t >>= 1 {
		n++
	}
	for range n {
		w.bit(false)
	}
	for i := n; i >= 0; i-- {
		w.bit(x>>uint(i)&1 == 1)
	}
}

// se writes a signed exp-Golomb code.
func (w *bitWriter) se(v int32) {
	if v > 0 {
		w.ue(uint32(2*v - 1))
		return
	}
	w.ue(uint32(-2 * v))
}

// align pads with zero bits to a byte boundary (pcm_alignment_zero_bit).
func (w *bitWriter) align() {
	for w.nbit != 0 {
		w.bit(false)
	}
}

// trailing writes rbsp_trailing_bits.
func (w *bitWriter) trailing() {
	w.bit(true)
	w.align()
}

// Sequence hands out a picture's frames in decoding order: an IDR, then
// skip frames with frame_num counting on, an IDR again when asked for. The
// zero value is unusable; make one with Picture.Sequence.
type Sequence struct {
	pic      *Picture
	frameNum int
	idrPicID int
	started  bool
}

// Sequence starts the picture's frames; the first Next is always an IDR.
func (p *Picture) Sequence() *Sequence { return &Sequence{pic: p} }

// Next is the next frame's NAL unit and whether it is an IDR: an IDR when
// key is set or nothing was handed out yet, else a skip frame. It allocates
// nothing.
func (s *Sequence) Next(key bool) (nalu []byte, idr bool) {
	if key || !s.started {
		s.started = true
		s.frameNum = 0
		nalu = s.pic.IDR[s.idrPicID]
		s.idrPicID ^= 1
		return nalu, true
	}
	s.frameNum = (s.frameNum + 1) % len(s.pic.P)
	return s.pic.P[s.frameNum], false
}
