-- One row per phone or e-mail of an orders-file row, normalised by warehouse/contact_points.py.
-- The node of the identity graph is the order itself: contact_id is its raw record_id (text).
with

source as (

    select * from {{ source('voronka_derived', 'contact_points') }}
    where source = 'files'

),

renamed as (

    select
        account,
        cast(contact_id as varchar) as contact_id,
        kind as point_kind,
        value_raw,
        value_normalized,
        value_normalized is not null as is_valid
    from source

)

select distinct * from renamed
