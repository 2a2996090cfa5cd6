/**
 * @file bind_ids.cpp
 * @brief The IdIndex class: a hash index from string ids to rows (idindex.h) over a UTF-8 blob
 *        held in two read-only NumPy arrays.
 *
 * Built from a list/tuple/array of str (encoded once into the blob) or from an existing blob
 * (data, offsets), as stored in a model file. Lookups accept a list or tuple of str or a 1-D
 * NumPy array of dtype object or str; ids without a UTF-8 form (lone surrogates) are never
 * found. Duplicate ids are a ValueError naming the id and both rows.
 */
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bindings.h"
#include "rankcore/idindex.h"

using rankcore::index_t;

namespace {

/// UTF-8 views of a list/tuple/array of str. Ids without a UTF-8 form (lone surrogates) are
/// listed in `invalid` (their view is empty): they cannot be in any index.
struct Utf8Views {
    std::vector<const char*> ptrs;
    std::vector<std::size_t> lens;
    std::vector<std::size_t> invalid;
    std::string storage;  // encoded bytes of NumPy '<U' input
    py::object keep;      // the sequence the pointers borrow from
};

Utf8Views utf8_views(const py::handle& ids, bool strict) {
    Utf8Views v;
    const char* what = "ids must be a list or tuple of str, or a 1-D NumPy array of dtype object or str";
    auto from_object = [&](PyObject* item, std::size_t i) {
        if (!PyUnicode_Check(item))
            throw py::type_error("ids[" + std::to_string(i) + "] is " +
                                 std::string(Py_TYPE(item)->tp_name) + ", not str");
        if (PyUnicode_IS_COMPACT_ASCII(item)) {  // the common case: the bytes are the str's own data
            v.ptrs[i] = static_cast<const char*>(PyUnicode_DATA(item));
            v.lens[i] = static_cast<std::size_t>(PyUnicode_GET_LENGTH(item));
            return;
        }
        Py_ssize_t len = 0;
        const char* s = PyUnicode_AsUTF8AndSize(item, &len);
        if (!s) {
            if (strict) throw py::error_already_set();
            PyErr_Clear();
            v.invalid.push_back(i);
            s = "";
            len = 0;
        }
        v.ptrs[i] = s;
        v.lens[i] = static_cast<std::size_t>(len);
    };
    if (PyList_Check(ids.ptr()) || PyTuple_Check(ids.ptr())) {
        v.keep = py::reinterpret_borrow<py::object>(ids);
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(ids.ptr());
        PyObject** items = PySequence_Fast_ITEMS(ids.ptr());
        v.ptrs.resize(static_cast<std::size_t>(n));
        v.lens.resize(static_cast<std::size_t>(n));
        for (Py_ssize_t i = 0; i < n; ++i) from_object(items[i], static_cast<std::size_t>(i));
        return v;
    }
    if (!py::isinstance<py::array>(ids)) throw py::type_error(std::string(what) + ", got " + Py_TYPE(ids.ptr())->tp_name);
    auto arr = py::reinterpret_borrow<py::array>(ids);
    if (arr.ndim() != 1) throw py::value_error(std::string(what) + "; got a " + std::to_string(arr.ndim()) + "-D array");
    v.keep = arr;
    const std::size_t n = static_cast<std::size_t>(arr.shape(0));
    const char kind = arr.dtype().kind();
    const char* base = static_cast<const char*>(arr.data());
    const py::ssize_t stride = arr.strides(0);
    v.ptrs.resize(n);
    v.lens.resize(n);
    if (kind == 'O') {
        for (std::size_t i = 0; i < n; ++i) {
            PyObject* item;
            std::memcpy(&item, base + static_cast<py::ssize_t>(i) * stride, sizeof item);
            from_object(item, i);
        }
        return v;
    }
    if (kind == 'U') {
        const char order = arr.dtype().byteorder();
        if (order == '>') throw py::type_error("ids has big-endian str dtype; use ids.astype(str)");
        const std::size_t width = static_cast<std::size_t>(arr.itemsize()) / 4;
        std::vector<std::size_t> starts(n);
        std::vector<std::uint32_t> buf(width);
        for (std::size_t i = 0; i < n; ++i) {
            std::memcpy(buf.data(), base + static_cast<py::ssize_t>(i) * stride, width * 4);
            std::size_t len = width;
            while (len > 0 && buf[len - 1] == 0) --len;  // NumPy strips trailing NULs
            starts[i] = v.storage.size();
            if (!rankcore::append_utf8_from_ucs4(buf.data(), len, v.storage)) {
                if (strict) throw py::value_error("ids[" + std::to_string(i) + "] is not valid Unicode");
                v.storage.resize(starts[i]);
                v.invalid.push_back(i);
            }
            v.lens[i] = v.storage.size() - starts[i];
        }
        for (std::size_t i = 0; i < n; ++i) v.ptrs[i] = v.storage.data() + starts[i];
        return v;
    }
    throw py::type_error(std::string(what) + ", got an array of dtype " + std::string(py::str(arr.dtype())));
}

class PyIdIndex {
public:
    static PyIdIndex from_sequence(const py::handle& ids) {
        Utf8Views v = utf8_views(ids, true);
        const std::size_t n = v.ptrs.size();
        carray<index_t> offsets(static_cast<py::ssize_t>(n + 1));
        index_t* o = offsets.mutable_data();
        o[0] = 0;
        for (std::size_t i = 0; i < n; ++i) o[i + 1] = o[i] + static_cast<index_t>(v.lens[i]);
        carray<std::uint8_t> data(static_cast<py::ssize_t>(o[n]));
        std::uint8_t* d = data.mutable_data();
        for (std::size_t i = 0; i < n; ++i)
            if (v.lens[i]) std::memcpy(d + o[i], v.ptrs[i], v.lens[i]);
        data.attr("flags").attr("writeable") = false;
        offsets.attr("flags").attr("writeable") = false;
        return PyIdIndex(std::move(data), std::move(offsets));
    }

    static PyIdIndex from_blob(const py::object& data, const py::object& offsets) {
        auto d = require_array<std::uint8_t>(data, "data", "uint8", 1);
        auto o = require_array<index_t>(offsets, "offsets", "int64", 1);
        if (o.shape(0) < 1) throw py::value_error("offsets must have n + 1 >= 1 entries");
        rankcore::validate_id_blob(o.data(), o.shape(0) - 1, d.shape(0));
        return PyIdIndex(std::move(d), std::move(o));
    }

    py::array_t<index_t> lookup(const py::handle& ids) const {
        Utf8Views v = utf8_views(ids, false);
        const index_t n = static_cast<index_t>(v.ptrs.size());
        py::array_t<index_t> out(n);
        index_t* r = out.mutable_data();
        std::vector<std::uint64_t> hashes;
        index_.find_batch(v.ptrs.data(), v.lens.data(), n, r, hashes);
        for (std::size_t i : v.invalid) r[i] = -1;
        return out;
    }

    index_t get(const py::handle& id) const {
        if (!PyUnicode_Check(id.ptr())) throw py::type_error(std::string("id must be str, not ") + Py_TYPE(id.ptr())->tp_name);
        Py_ssize_t len = 0;
        const char* s = PyUnicode_AsUTF8AndSize(id.ptr(), &len);
        if (!s) {
            PyErr_Clear();
            return -1;
        }
        return index_.find(s, static_cast<std::size_t>(len));
    }

    bool contains(const py::handle& id) const { return PyUnicode_Check(id.ptr()) && get(id) >= 0; }

    index_t size() const { return index_.size(); }

    py::str id_at(index_t row) const {
        if (row < 0 || row >= index_.size())
            throw py::index_error("row " + std::to_string(row) + " out of range for an IdIndex of " +
                                  std::to_string(index_.size()) + " ids");
        PyObject* s = PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(index_.bytes(row)),
                                           static_cast<Py_ssize_t>(index_.length(row)), "strict");
        if (!s) throw py::error_already_set();
        return py::reinterpret_steal<py::str>(s);
    }

    py::tuple blob() const { return py::make_tuple(data_, offsets_); }

private:
    PyIdIndex(carray<std::uint8_t> data, carray<index_t> offsets) : data_(std::move(data)), offsets_(std::move(offsets)) {
        index_t dup[2] = {-1, -1};
        bool ok;
        {
            py::gil_scoped_release release;
            ok = index_.build(data_.data(), offsets_.data(), offsets_.shape(0) - 1, dup);
        }
        if (!ok) {
            PyObject* s = PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(index_.bytes(dup[0])),
                                               static_cast<Py_ssize_t>(index_.length(dup[0])), "backslashreplace");
            if (!s) throw py::error_already_set();
            const std::string id = py::repr(py::reinterpret_steal<py::str>(s));
            throw py::value_error("duplicate id " + id + " at rows " + std::to_string(dup[0]) + " and " +
                                  std::to_string(dup[1]));
        }
    }

    carray<std::uint8_t> data_;
    carray<index_t> offsets_;
    rankcore::IdIndex index_;
};

}  // namespace

void bind_ids(py::module_& m) {
    py::class_<PyIdIndex>(m, "IdIndex", "Hash index from string ids to rows (read-only after construction).")
        .def(py::init([](const py::object& ids) { return PyIdIndex::from_sequence(ids); }), py::arg("ids"))
        .def_static("from_blob", &PyIdIndex::from_blob, py::arg("data"), py::arg("offsets"),
                    "Index ids stored as UTF-8 bytes: id i is data[offsets[i]:offsets[i + 1]]. The arrays are "
                    "referenced, not copied, and must not be modified afterwards.")
        .def("lookup", &PyIdIndex::lookup, py::arg("ids"), "Rows of the ids (int64 array), -1 for unknown ids.")
        .def("get", &PyIdIndex::get, py::arg("id"), "Row of the id, or -1.")
        .def("__contains__", &PyIdIndex::contains, py::arg("id"))
        .def("__len__", &PyIdIndex::size)
        .def("id_at", &PyIdIndex::id_at, py::arg("row"), "The id stored at a row.")
        .def("blob", &PyIdIndex::blob, "(data, offsets): the UTF-8 bytes and int64 offsets the index is built on.")
        .def("__repr__", [](const PyIdIndex& self) { return "IdIndex(" + std::to_string(self.size()) + " ids)"; });
}
