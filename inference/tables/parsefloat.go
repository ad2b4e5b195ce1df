package tables

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strconv"
	"unsafe"
)

// Hand-written because strconv.ParseFloat takes a string (a copy per cell from a line's bytes) and
// spends most of its time on forms CSV numbers never take (underscores, hex, inf); parseFloat64 and
// parseFloat32 take the exact fast path of plain decimals and leave everything else to strconv, so
// every result and every refusal is strconv's.

// float64pow10 holds the powers of ten a float64 represents exactly.
var float64pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// plainDecimal parses [+-]digits[.digits][(e|E)[+-]digits] with at most 19 significant digits into
// mant * 10^exp; ok is false for anything else.
func plainDecimal(b []byte) (mant uint64, exp int, neg, ok bool) {
	mant, exp, neg, n, ok := decimalPrefix(b)
	return mant, exp, neg, ok && n == len(b)
}

// decimalPrefix is plainDecimal of b's longest prefix that can be one, n bytes long: a CSV cell is
// parsed in place, its end being where the number ends (a comma, or anything else, is then checked).
func decimalPrefix(b []byte) (mant uint64, exp int, neg bool, n int, ok bool) {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	var digits, sig, nd int
	i, mant, sig, nd = appendDigits(b, i, mant, sig)
	digits += nd
	if i < len(b) && b[i] == '.' {
		i, mant, sig, nd = appendDigits(b, i+1, mant, sig)
		digits += nd
		exp -= nd
	}
	if digits == 0 || sig > 19 {
		return 0, 0, false, i, false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		e, edigits := 0, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			e = e*10 + int(b[i]-'0')
			edigits++
		}
		if edigits == 0 || edigits > 4 {
			return 0, 0, false, i, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	return mant, exp, neg, i, true
}

// appendDigits appends the run of digits at b[i:] to mant, which holds sig significant digits (a
// leading zero is not one), and returns where the run ends, mant, sig and the run's length. Past 19
// significant digits mant is garbage: the caller refuses those.
func appendDigits(b []byte, i int, mant uint64, sig int) (int, uint64, int, int) {
	start := i
	// Up to eight digits at a time while eight bytes are left (SWAR, as in fast_float; a
	// branch a digit mispredicts where each number ends).
	for i+8 <= len(b) && sig <= 11 {
		chunk := binary.LittleEndian.Uint64(b[i:])
		// Bit 7 of each byte that is not a digit: the lowest such byte (the first in b) is exact,
		// as no carry or borrow comes into it from the digits before it.
		notDigit := ((chunk + 0x4646464646464646) | (chunk - 0x3030303030303030)) & 0x8080808080808080
		nd := bits.TrailingZeros64(notDigit) / 8 // 8 where all are digits
		if nd == 0 {
			return i, mant, sig, i - start
		}
		// The nd digits moved to the high bytes: the low bytes become leading zeros, the bytes
		// after the digits fall off.
		d := (chunk - 0x3030303030303030) << (8 * (8 - nd))
		if mant == 0 {
			sig += 8 - bits.TrailingZeros64(d)/8 // less the leading zeros; all zero: none
		} else {
			sig += nd
		}
		mant = mant*uint64pow10[nd] + parseEightDigits(d)
		i += nd
		if nd < 8 {
			return i, mant, sig, i - start
		}
	}
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if mant == 0 && b[i] == '0' {
			continue
		}
		mant = mant*10 + uint64(b[i]-'0')
		sig++
	}
	return i, mant, sig, i - start
}

var uint64pow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

// parseEightDigits is the value of eight digits, d holding one digit value per byte, the first digit
// in the low byte (SWAR, as in fast_float).
func parseEightDigits(d uint64) uint64 {
	d = d*10 + d>>8
	d = ((d&0x000000FF000000FF)*(100+1000000<<32) + (d>>16&0x000000FF000000FF)*(1+10000<<32)) >> 32
	return d & 0xFFFFFFFF
}

// float64FromDecimal is mant * 10^exp correctly rounded where both are exact in a float64
// (Clinger's fast path).
func float64FromDecimal(mant uint64, exp int, neg bool) (float64, bool) {
	if mant >= 1<<53 || exp < -22 || exp > 22 {
		return 0, false
	}
	f := float64(mant)
	if exp < 0 {
		f /= float64pow10[-exp]
	} else {
		f *= float64pow10[exp]
	}
	if neg {
		f = -f
	}
	return f, true
}

// float32FromFloat64 is the float32 nearest the decimal whose nearest float64 is f, where that is
// sure: see parseFloat32.
func float32FromFloat64(f float64) (float32, bool) {
	a := math.Abs(f)
	halfway := math.Float64bits(f)&(1<<29-1) == 1<<28
	if f == 0 || (!halfway && a >= math.SmallestNonzeroFloat32*(1<<23) && a <= math.MaxFloat32) {
		return float32(f), true
	}
	return 0, false
}

// exactFloat64 is b as a float64 where b is a plain decimal that float64FromDecimal takes.
func exactFloat64(b []byte) (float64, bool) {
	mant, exp, neg, ok := plainDecimal(b)
	if !ok {
		return 0, false
	}
	return float64FromDecimal(mant, exp, neg)
}

// parseFloat64 parses b as strconv.ParseFloat(b, 64) does.
func parseFloat64(b []byte) (float64, error) {
	if f, ok := exactFloat64(b); ok {
		return f, nil
	}
	return strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
}

// parseFloat32 parses b as strconv.ParseFloat(b, 32) does. The float64 nearest the decimal rounds to
// the float32 nearest it unless it lies exactly halfway between two float32s (every such halfway
// point is a float64): those, and results outside float32's normal range, go to strconv.
func parseFloat32(b []byte) (float32, error) {
	if f, ok := exactFloat64(b); ok {
		if v, ok := float32FromFloat64(f); ok {
			return v, nil
		}
	}
	v, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 32)
	return float32(v), err
}
