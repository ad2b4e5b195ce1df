package tables

import (
	"math"
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
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	digits, sig := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		digits++
		if mant == 0 && b[i] == '0' {
			continue
		}
		mant = mant*10 + uint64(b[i]-'0')
		sig++
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			digits++
			exp--
			if mant == 0 && b[i] == '0' {
				continue
			}
			mant = mant*10 + uint64(b[i]-'0')
			sig++
		}
	}
	if digits == 0 || sig > 19 {
		return 0, 0, false, false
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
			return 0, 0, false, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	return mant, exp, neg, i == len(b)
}

// exactFloat64 is mant * 10^exp correctly rounded, where both are exact in a float64 (Clinger's fast path).
func exactFloat64(b []byte) (float64, bool) {
	mant, exp, neg, ok := plainDecimal(b)
	if !ok || mant >= 1<<53 || exp < -22 || exp > 22 {
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
		a := math.Abs(f)
		halfway := math.Float64bits(f)&(1<<29-1) == 1<<28
		if f == 0 || (!halfway && a >= math.SmallestNonzeroFloat32*(1<<23) && a <= math.MaxFloat32) {
			return float32(f), nil
		}
	}
	v, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 32)
	return float32(v), err
}
